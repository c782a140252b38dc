//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierRedis
import CourierTestSupport
import CourierTesting
import Foundation
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// A `redis-server` started by a test on a free loopback port, and stopped by its PID.
final class RedisServer: Sendable {
    let port: Int
    private let arguments: [String]
    private let process = Mutex<Process?>(nil)

    private init(port: Int, arguments: [String]) {
        self.port = port
        self.arguments = arguments
    }

    /// Starts `redis-server` with no persistence, plus `arguments` (such as `["--requirepass", "pw"]`), and waits
    /// until it accepts connections.
    static func start(arguments: [String] = []) async throws -> RedisServer {
        var lastError: (any Error)?
        for _ in 0..<3 {  // another process may take the free port between probing and binding it
            let server = RedisServer(port: try await freeLoopbackPort(), arguments: arguments)
            do {
                try await server.launch()
                return server
            } catch {
                lastError = error
                await server.stop()
            }
        }
        throw lastError!
    }

    /// A client configuration for this server.
    var configuration: RedisConfiguration {
        RedisConfiguration(host: "127.0.0.1", port: port, connectTimeout: .seconds(2), commandTimeout: .seconds(10))
    }

    /// Starts the server again on the same port after ``stop()``.
    func restart() async throws {
        try await launch()
    }

    /// Stops the server (SIGKILL to its PID, as a crash would) and waits until it has exited.
    ///
    /// SIGKILL because a child started by `Process` from a Swift concurrency thread inherits that thread's signal
    /// mask, in which SIGTERM is blocked: redis-server would never see it.
    func stop() async {
        guard let process = process.withLock({ $0.take() }) else { return }
        kill(process.processIdentifier, SIGKILL)
        let deadline = ContinuousClock.now + .seconds(10)
        while process.isRunning, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    private func launch() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try Self.redisServerPath())
        process.arguments = [
            "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "warning",
        ] + arguments
        let logPath = FileManager.default.temporaryDirectory.appendingPathComponent("courier-redis-\(port).log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        try process.run()
        TestProcessLedger.record(process.processIdentifier)
        self.process.withLock { $0 = process }
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard process.isRunning else {
                let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                throw TestFailure("redis-server exited at start: \(output.suffix(1000))")
            }
            if await Self.answersAsRedis(port: port) { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw TestFailure("redis-server did not accept connections on port \(port) within 10 s")
    }

    private static func redisServerPath() throws -> String {
        for path in ["/usr/bin/redis-server", "/usr/local/bin/redis-server", "/opt/homebrew/bin/redis-server"]
        where FileManager.default.isExecutableFile(atPath: path) {
            return path
        }
        throw TestFailure("redis-server is not installed (scripts/setup installs it)")
    }

    /// Whether a Redis server answers on `port`: an inline `PING` gets a RESP answer (`+PONG`, or an error such as
    /// `-NOAUTH`). Accepting the connection is not enough: a connection to a loopback port nobody listens on can
    /// connect to itself when the kernel picks that port as its source port, and then reads back its own bytes.
    private static func answersAsRedis(port: Int) async -> Bool {
        let firstByte = Mutex<EventLoopPromise<UInt8>?>(nil)
        do {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelInitializer { channel in
                    let promise = channel.eventLoop.makePromise(of: UInt8.self)
                    firstByte.withLock { $0 = promise }
                    return channel.pipeline.addHandler(FirstByteHandler(promise: promise))
                }
                .connect(host: "127.0.0.1", port: port).get()
            defer { channel.close(promise: nil) }
            guard let answer = firstByte.withLock({ $0 })?.futureResult else { return false }
            channel.eventLoop.scheduleTask(in: .seconds(1)) {
                firstByte.withLock { $0 }?.fail(TestFailure("no answer to PING"))
            }
            try await channel.writeAndFlush(ByteBuffer(string: "PING\r\n")).get()
            let byte = try await answer.get()
            return byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
        } catch {
            // A connection that failed before it was active leaves its promise incomplete, which NIO reports.
            firstByte.withLock { $0 }?.fail(error)
            return false
        }
    }

    /// Completes `promise` with the first byte the connection reads.
    private final class FirstByteHandler: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<UInt8>

        init(promise: EventLoopPromise<UInt8>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if let byte = unwrapInboundIn(data).getInteger(at: 0, as: UInt8.self) { promise.succeed(byte) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(TestFailure("closed before answering PING"))
        }
    }
}

/// A loopback port free to listen on, for a server a test starts in another process. It is taken below the
/// kernel's ephemeral range (`/proc/sys/net/ipv4/ip_local_port_range`), where the kernel never puts the source port
/// of an outgoing connection: tests run in parallel and open many connections, and a port of that range found free
/// a moment ago could be a connection's own port by the time the server binds it.
func freeLoopbackPort() async throws -> Int {
    let ephemeralStart = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8))
        .flatMap { $0.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) } } ?? 32_768
    let range = 10_000..<max(10_001, min(ephemeralStart, 65_536))
    for _ in 0..<50 {
        let port = Int.random(in: range)
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 0)
                .bind(host: "127.0.0.1", port: port).get()
            try await channel.close()
            return port
        } catch {
            continue  // in use: try another
        }
    }
    throw TestFailure("no free loopback port below \(range.upperBound)")
}

/// The Redis tests run against: `COURIER_REDIS_URL` when set (scripts/test starts one server for the run),
/// otherwise a `redis-server` of the test's own, stopped when `body` returns.
func withRedis<T>(_ body: (RedisConfiguration) async throws -> T) async throws -> T {
    if let url = ProcessInfo.processInfo.environment["COURIER_REDIS_URL"], !url.isEmpty {
        var configuration = try RedisConfiguration(url: url)
        configuration.connectTimeout = .seconds(2)
        return try await body(configuration)
    }
    return try await withRedisServer { server in try await body(server.configuration) }
}

/// Runs `body` with a `redis-server` of its own (for tests that configure or restart the server), stopping it by
/// PID afterwards, also when `body` throws.
func withRedisServer<T>(arguments: [String] = [], _ body: (RedisServer) async throws -> T) async throws -> T {
    let server = try await RedisServer.start(arguments: arguments)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}

/// Adds to `redis` a user that may run every command but `PUBLISH`, and returns the configuration that logs in as it:
/// a real error answer to a `PUBLISH`, for tests of what happens to commands nobody waits for.
func configurationWithoutPublish(on redis: RedisServer) async throws -> RedisConfiguration {
    let admin = try await RedisConnection.connect(configuration: redis.configuration)
    _ = try await admin.send(["ACL", "SETUSER", "mute", "on", ">secret", "~*", "&*", "+@all", "-publish"])
    await admin.close()
    var muted = redis.configuration
    muted.username = "mute"
    muted.password = "secret"
    return muted
}

/// A key (or channel) name no other test uses, so tests can share one server.
func uniqueName(_ label: String) -> String {
    "courier-test:\(UUID().uuidString):\(label)"
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Collects a subscriber's messages in the background, so tests can wait for them with a deadline.
final class MessageCollector: Sendable {
    private final class Received: Sendable {
        let messages = Mutex<[RedisPubSubMessage]>([])
    }

    private let received = Received()
    private let task: Task<Void, Never>

    init(_ subscriber: RedisSubscriber) {
        let received = self.received
        task = Task {
            for await message in subscriber.messages {
                received.messages.withLock { $0.append(message) }
            }
        }
    }

    deinit { task.cancel() }

    var messages: [RedisPubSubMessage] { received.messages.withLock { $0 } }

    /// Waits until `count` messages arrived, or `timeout` passed; returns what arrived.
    func waitFor(count: Int, timeout: Duration = .seconds(5)) async throws -> [RedisPubSubMessage] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let messages = self.messages
            if messages.count >= count { return messages }
            try await Task.sleep(for: .milliseconds(5))
        }
        return messages
    }
}

/// The error `body` throws, as a `CourierError`; records an issue when it throws something else or nothing.
func courierError(
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: () async throws -> Void
) async -> CourierError? {
    do {
        try await body()
        Issue.record("expected a CourierError, nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as CourierError {
        return error
    } catch {
        Issue.record("expected a CourierError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

