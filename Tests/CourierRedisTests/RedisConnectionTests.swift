//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierRedis
import Foundation
import NIOCore
import Testing

/// `RedisConnection` against a real `redis-server`.
@Suite struct RedisConnectionTests {
    @Test func setAndGetAreBinarySafe() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let key = uniqueName("binary")
            let payload: [UInt8] = [0, 13, 10, 0, 255, 36, 13, 10, 42] + Array("tail".utf8)
            #expect(try await redis.send(["SET", RESPArgument(key), RESPArgument(bytes: payload)]) == .simpleString("OK"))
            #expect(try await redis.send(["GET", RESPArgument(key)]).bytes == payload)
            #expect(try await redis.send(["STRLEN", RESPArgument(key)]).int == payload.count)
            #expect(try await redis.send(["GET", RESPArgument(uniqueName("missing"))]).isNull)
            _ = try await redis.send(["DEL", RESPArgument(key)])
            await redis.close()
        }
    }

    @Test func tenThousandConcurrentCommandsArePipelinedAndEachGetsItsOwnReply() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let counter = uniqueName("counter")
            let clock = ContinuousClock()
            let start = clock.now
            let increments = try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<10_000 {
                    group.addTask {
                        let echo = try await redis.send(["ECHO", "message \(index)"])
                        guard echo.string == "message \(index)" else {
                            throw TestFailure("caller \(index) got \(echo)")
                        }
                        return try await redis.send(["INCR", RESPArgument(counter)]).int ?? -1
                    }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            let elapsed = clock.now - start
            // Every INCR reply reached exactly one caller: the replies are 1…10 000, each once.
            #expect(increments.sorted() == Array(1...10_000))
            print("pipelined 20 000 commands from 10 000 tasks in \(elapsed)")
            _ = try await redis.send(["DEL", RESPArgument(counter)])
            await redis.close()
        }
    }

    @Test func errorReplyThrowsRedisErrorAndTheConnectionStaysUsable() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let key = uniqueName("string")
            _ = try await redis.send(["SET", RESPArgument(key), "v"])
            let error = await #expect(throws: RedisError.self) {
                try await redis.send(["LPUSH", RESPArgument(key), "x"])
            }
            #expect(error?.kind == "WRONGTYPE")
            #expect(error?.message.hasPrefix("WRONGTYPE Operation against a key holding the wrong kind of value") == true)
            #expect(error.map { CourierError($0).code } == .remote)
            let unknown = await #expect(throws: RedisError.self) { try await redis.send(["NO-SUCH-COMMAND"]) }
            #expect(unknown?.kind == "ERR")
            #expect(try await redis.send(["GET", RESPArgument(key)]).string == "v")
            _ = try await redis.send(["DEL", RESPArgument(key)])
            await redis.close()
        }
    }

    @Test func anyCommandRunsIncludingStreams() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let stream = uniqueName("stream")
            let id = try await redis.send(["XADD", RESPArgument(stream), "*", "field", "value"]).string
            #expect(id?.contains("-") == true)
            let info = try await redis.send(["XINFO", "STREAM", RESPArgument(stream)]).array ?? []
            let fields = stride(from: 0, to: info.count - 1, by: 2).map { (info[$0].string ?? "", info[$0 + 1]) }
            #expect(fields.first { $0.0 == "length" }?.1 == .integer(1))
            _ = try await redis.send(["DEL", RESPArgument(stream)])
            await redis.close()
        }
    }

    @Test func selectsTheConfiguredDatabase() async throws {
        try await withRedis { configuration in
            var other = configuration
            other.database = configuration.database == 3 ? 4 : 3
            let inDefault = try await RedisConnection.connect(configuration: configuration)
            let inOther = try await RedisConnection.connect(configuration: other)
            let key = uniqueName("db")
            _ = try await inOther.send(["SET", RESPArgument(key), "there"])
            #expect(try await inOther.send(["GET", RESPArgument(key)]).string == "there")
            #expect(try await inDefault.send(["GET", RESPArgument(key)]).isNull)
            let clientInfo = try await inOther.send(["CLIENT", "INFO"]).string ?? ""
            #expect(clientInfo.contains(" db=\(other.database) "), "\(clientInfo)")
            _ = try await inOther.send(["DEL", RESPArgument(key)])
            await inDefault.close()
            await inOther.close()
        }
    }

    @Test func aBlockingCommandDoesNotDelayAnotherConnection() async throws {
        try await withRedis { configuration in
            let blocked = try await RedisConnection.connect(configuration: configuration)
            let free = try await RedisConnection.connect(configuration: configuration)
            let list = uniqueName("list")
            let name = try await nameClient(blocked)
            let blocking = Task { try await blocked.send(["BLPOP", RESPArgument(list), "0"], timeout: nil) }
            try await waitUntilBlocked(name, checkingWith: free)
            // The other connection is served while BLPOP is still blocked in Redis.
            #expect(try await free.send(["PING"]) == .simpleString("PONG"))
            #expect(try await free.send(["LPUSH", RESPArgument(uniqueName("other")), "x"]).int == 1)
            _ = try await free.send(["RPUSH", RESPArgument(list), "release"])
            #expect(try await blocking.value.array?.last?.string == "release")
            await blocked.close()
            await free.close()
        }
    }

    @Test func aCancelledCallerReturnsAtOnceAndTheNextReplyGoesToTheRightCaller() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let other = try await RedisConnection.connect(configuration: configuration)
            let list = uniqueName("list")
            let key = uniqueName("key")
            _ = try await redis.send(["SET", RESPArgument(key), "mine"])
            let name = try await nameClient(redis)
            let waiting = Task { try await redis.send(["BLPOP", RESPArgument(list), "5"]) }
            try await waitUntilBlocked(name, checkingWith: other)
            let clock = ContinuousClock()
            let start = clock.now
            waiting.cancel()
            let error = await courierError { _ = try await waiting.value }
            #expect(error?.code == .cancelled)
            #expect(clock.now - start < .milliseconds(2500), "a cancelled caller must not wait for BLPOP's 5 s")
            // BLPOP still holds its slot: it takes this element, its reply is discarded, and GET gets its own reply.
            _ = try await other.send(["RPUSH", RESPArgument(list), "element"])
            #expect(try await redis.send(["GET", RESPArgument(key)]).string == "mine")
            #expect(try await redis.send(["LLEN", RESPArgument(list)]).int == 0)
            _ = try await redis.send(["DEL", RESPArgument(key)])
            await redis.close()
            await other.close()
        }
    }

    @Test func aCommandTimeoutFailsWithTimedOutAndTheConnectionRecovers() async throws {
        try await withRedis { configuration in
            var configuration = configuration
            configuration.commandTimeout = .milliseconds(200)
            let redis = try await RedisConnection.connect(configuration: configuration)
            let list = uniqueName("list")
            let clock = ContinuousClock()
            let start = clock.now
            let timedOut = await courierError { _ = try await redis.send(["BLPOP", RESPArgument(list), "5"]) }
            let elapsed = clock.now - start
            #expect(timedOut?.code == .timedOut)
            #expect(elapsed >= .milliseconds(200) && elapsed < .seconds(4), "\(elapsed) (BLPOP would block 5 s)")
            // The connection was replaced at once: the next command succeeds, and a long block works with its own
            // timeout. (Generous timeouts here: the 200 ms one is about BLPOP, not about a loaded test machine.)
            #expect(try await redis.send(["PING"], timeout: .seconds(5)) == .simpleString("PONG"))
            #expect(try await redis.send(["BLPOP", RESPArgument(list), "0.5"], timeout: .seconds(5)).isNull)
            await redis.close()
        }
    }

    @Test func aTimeoutFailsTheCommandsPipelinedBehindItWithTransportUnavailable() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            let observer = try await RedisConnection.connect(configuration: configuration)
            let list = uniqueName("list")
            let name = try await nameClient(redis)
            // 3 s: long enough that the PING below is surely written behind BLPOP, even on a loaded machine.
            let blpop = Task { try await redis.send(["BLPOP", RESPArgument(list), "10"], timeout: .seconds(3)) }
            try await waitUntilBlocked(name, checkingWith: observer)
            let behind = await courierError { _ = try await redis.send(["PING"], timeout: nil) }
            let timedOut = await courierError { _ = try await blpop.value }
            #expect(timedOut?.code == .timedOut)
            #expect(behind?.code == .transportUnavailable)
            #expect(behind?.message.contains("command 'BLPOP' got no reply within") == true)
            #expect(try await redis.send(["PING"]) == .simpleString("PONG"))
            await redis.close()
            await observer.close()
        }
    }

    @Test func connectingToNothingFailsFast() async throws {
        // A refused connection fails at once, not after the connect timeout; the bound leaves room for a loaded
        // machine while staying far below the timeout.
        var configuration = RedisConfiguration(port: 1)
        configuration.connectTimeout = .seconds(60)
        let clock = ContinuousClock()
        let start = clock.now
        let error = await courierError { _ = try await RedisConnection.connect(configuration: configuration) }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.hasPrefix("cannot connect to redis://127.0.0.1:1:") == true)
        #expect(clock.now - start < .seconds(15))
    }

    @Test func sendAfterCloseFailsWithTransportUnavailable() async throws {
        try await withRedis { configuration in
            let redis = try await RedisConnection.connect(configuration: configuration)
            await redis.close()
            let error = await courierError { _ = try await redis.send(["PING"]) }
            #expect(error?.code == .transportUnavailable)
            #expect(error?.message.contains("is closed") == true)
        }
    }
}

/// Names `connection` uniquely (`CLIENT SETNAME`), for ``waitUntilBlocked(_:checkingWith:)``.
func nameClient(_ connection: RedisConnection) async throws -> String {
    let name = "blocked-\(UUID().uuidString)"
    _ = try await connection.send(["CLIENT", "SETNAME", RESPArgument(name)])
    return name
}

/// Waits until the client named `name` is blocked in Redis (`CLIENT LIST` shows `flags=b`), so a test knows its
/// blocking command was written before it goes on.
func waitUntilBlocked(_ name: String, checkingWith connection: RedisConnection) async throws {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        let clients = try await connection.send(["CLIENT", "LIST"]).string ?? ""
        if clients.split(separator: "\n").contains(where: { $0.contains(" name=\(name) ") && $0.contains(" flags=b ") }) {
            return
        }
        try await Task.sleep(for: .milliseconds(5))
    }
    throw TestFailure("client \(name) did not block within 5 s")
}

/// Authentication needs servers of their own (`requirepass`, ACL users).
@Suite struct RedisAuthenticationTests {
    @Test func requirepassAuthenticatesTheDefaultUser() async throws {
        try await withRedisServer(arguments: ["--requirepass", "s3cret"]) { server in
            var configuration = server.configuration
            configuration.password = "s3cret"
            let redis = try await RedisConnection.connect(configuration: configuration)
            #expect(try await redis.send(["ACL", "WHOAMI"]).string == "default")
            await redis.close()

            configuration.password = "wrong"
            let refused = await courierError { _ = try await RedisConnection.connect(configuration: configuration) }
            #expect(refused?.code == .transportUnavailable)
            #expect(refused?.message.contains("Redis refused the handshake: WRONGPASS") == true)
            #expect((refused?.underlying as? RedisError)?.kind == "WRONGPASS")

            // Without a password the handshake's PING is refused with NOAUTH, so connecting fails and says why.
            configuration.password = nil
            let unauthenticated = await courierError {
                _ = try await RedisConnection.connect(configuration: configuration)
            }
            #expect((unauthenticated?.underlying as? RedisError)?.kind == "NOAUTH")
        }
    }

    @Test func anACLUserAuthenticatesWithUsernameAndPassword() async throws {
        // One argument per ACL rule word: a single "alice on …" argument would be read as the user name.
        let user = ["--user", "alice", "on", ">alice-pw", "~courier-test:*", "&*", "+@all"]
        try await withRedisServer(arguments: user) { server in
            let url = "redis://alice:alice-pw@127.0.0.1:\(server.port)/2"
            let redis = try await RedisConnection.connect(configuration: RedisConfiguration(url: url))
            #expect(try await redis.send(["ACL", "WHOAMI"]).string == "alice")
            let key = uniqueName("acl")
            #expect(try await redis.send(["SET", RESPArgument(key), "ok"]) == .simpleString("OK"))
            // alice may only touch courier-test:* keys: a refusal is an error reply, not a broken connection.
            let denied = await #expect(throws: RedisError.self) { try await redis.send(["GET", "elsewhere"]) }
            #expect(denied?.kind == "NOPERM")
            #expect(try await redis.send(["GET", RESPArgument(key)]).string == "ok")
            await redis.close()
        }
    }
}
