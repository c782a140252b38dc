//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierExample
@testable import CourierRedis
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// The Redis transports against failures: Redis restarting, workers dying, handlers that keep failing.
@Suite(.serialized) struct RedisTransportTests {
    static var quietLogger: Logger {
        var logger = Logger(label: "test.redis")
        logger.logLevel = .critical
        return logger
    }

    /// Streams settings for tests of claims: the given block and claim idle times, looking for idle entries every
    /// 100 ms.
    static func quickClaims(_ redis: RedisConfiguration, block: Duration, idle: Duration) -> RedisStreamsConfiguration {
        var configuration = RedisStreamsConfiguration(connection: redis, blockTime: block)
        configuration.claimIdleTime = idle
        configuration.claimInterval = .milliseconds(100)
        return configuration
    }

    /// Deletes a test's key (its stream) from `redis`.
    static func delete(_ key: String, on redis: RedisConfiguration) async throws {
        let connection = try await RedisConnection.connect(configuration: redis)
        _ = try await connection.send(["DEL", RESPArgument(key)])
        await connection.close()
    }

    /// Runs the example service on `server` with `client` until `body` returns.
    static func withWorker(
        _ server: any ServerTransport,
        router: MessageRouter = ExampleService.router(),
        _ body: () async throws -> Void
    ) async throws {
        let worker = Microservice(router: router, transport: server, logger: quietLogger)
        let running = Task { try await worker.run() }
        do {
            try await body()
        } catch {
            running.cancel()
            _ = try? await running.value
            throw error
        }
        running.cancel()
        _ = try? await running.value
    }

    /// While Redis is down, calls fail at once with transportUnavailable; once it is back, the same worker and
    /// client serve again with no action.
    @Test(arguments: ["pubsub", "streams"])
    func callsFailFastWhileRedisIsDownAndResumeAfterARestart(_ mode: String) async throws {
        try await withRedisServer { redis in
            let server: any ServerTransport
            let clientTransport: any ClientTransport
            if mode == "pubsub" {
                let configuration = RedisPubSubConfiguration(connection: redis.configuration)
                let pubsub = RedisServerTransport(configuration: configuration, logger: Self.quietLogger)
                server = pubsub
                clientTransport = RedisClientTransport(configuration: configuration, logger: Self.quietLogger)
            } else {
                var configuration = RedisStreamsConfiguration(connection: redis.configuration,
                                                              blockTime: .milliseconds(300))
                configuration.claimInterval = .milliseconds(200)
                server = RedisStreamsServerTransport(configuration: configuration, logger: Self.quietLogger)
                clientTransport = RedisStreamsClientTransport(configuration: configuration, logger: Self.quietLogger)
            }
            try await Self.withWorker(server) {
                if let pubsub = server as? RedisServerTransport { try await pubsub.waitUntilSubscribed() }
                if let streams = server as? RedisStreamsServerTransport { try await streams.waitUntilReading() }
                let client = CourierClient(transport: clientTransport)
                #expect(try await client.send(ExampleService.sum, [1, 2], timeout: .seconds(5)) == 3)

                await redis.stop()
                let clock = ContinuousClock()
                for _ in 0..<3 {
                    let started = clock.now
                    let error = await #expect(throws: CourierError.self) {
                        _ = try await client.send(ExampleService.sum, [1], timeout: .seconds(20))
                    }
                    #expect(error?.code == .transportUnavailable, "\(String(describing: error))")
                    #expect(clock.now - started < .seconds(10), "a call while Redis is down must fail fast")
                }

                try await redis.restart()
                // Redis restarted empty (no persistence): the connections reconnect and subscribe again, and the
                // Streams worker recreates its group.
                let deadline = clock.now + .seconds(20)
                var answer: Int?
                while answer == nil, clock.now < deadline {
                    answer = try? await client.send(ExampleService.sum, [20, 22], timeout: .seconds(2))
                    if answer == nil { try await Task.sleep(for: .milliseconds(100)) }
                }
                #expect(answer == 42, "service did not resume after Redis came back")
                await client.shutdown()
            }
        }
    }

    /// An event whose handler keeps failing is delivered maxDeliveries times, then lands on `<stream>.dlq` with
    /// its error, and nothing stays pending.
    @Test func aStreamsEventThatKeepsFailingIsDeadLetteredWithItsError() async throws {
        try await withRedisServer { redis in
            var configuration = Self.quickClaims(redis.configuration, block: .milliseconds(200), idle: .milliseconds(300))
            configuration.maxDeliveries = 3
            let attempts = Atomic(0)
            var router = MessageRouter()
            router.onEvent("jobs.flaky") { _, _ in
                attempts.add(1, ordering: .relaxed)
                throw CourierError(.unprocessable, "the printer is on fire")
            }
            let server = RedisStreamsServerTransport(configuration: configuration, logger: Self.quietLogger)
            try await Self.withWorker(server, router: router) {
                try await server.waitUntilReading()
                let client = CourierClient(
                    transport: RedisStreamsClientTransport(configuration: configuration, logger: Self.quietLogger)
                )
                try await client.emit("jobs.flaky", json: ["job": 7])
                let redisClient = try await RedisConnection.connect(configuration: redis.configuration)
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(15)
                var letters: [RESPValue] = []
                while letters.isEmpty, clock.now < deadline {
                    letters = try await redisClient.send(["XRANGE", "jobs.flaky.dlq", "-", "+"]).array ?? []
                    if letters.isEmpty { try await Task.sleep(for: .milliseconds(50)) }
                }
                let entry = try #require(letters.first?.array)
                let flat = entry[1].array ?? []
                var fields: [String: String] = [:]
                for index in stride(from: 0, to: flat.count - 1, by: 2) {
                    fields[flat[index].string ?? ""] = flat[index + 1].string
                }
                #expect(fields["error"]?.contains("the printer is on fire") == true, "\(fields)")
                #expect(fields["deliveries"] == "3")
                #expect(fields["source-stream"] == "jobs.flaky")
                #expect(fields["packet"]?.contains("\"job\":7") == true)
                #expect(attempts.load(ordering: .relaxed) == 3)
                // The dead letter is written before the entry's acknowledgement, which the worker sends in batches:
                // wait for it rather than read the pending count at the instant the dead letter appears.
                var pending = try await redisClient.send(["XPENDING", "jobs.flaky", RESPArgument(configuration.group)])
                while pending.array?.first?.int != 0, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                    pending = try await redisClient.send(["XPENDING", "jobs.flaky", RESPArgument(configuration.group)])
                }
                #expect(pending.array?.first?.int == 0, "entries left pending: \(pending)")
                await redisClient.close()
                await client.shutdown()
            }
        }
    }

    /// Redis sends a message once per matching subscription (an exact channel and each glob): a worker whose
    /// routes overlap handles it once, with the handler the router picks.
    @Test func overlappingRoutesHandleEachPublishedMessageOnce() async throws {
        try await withRedis { redis in
            let prefix = uniqueName("overlap")
            let counts = Mutex<[String: Int]>([:])
            var router = MessageRouter()
            for route in ["\(prefix).orders.created", "\(prefix).orders.*", "\(prefix).*.created", "\(prefix).done"] {
                router.onEvent(route) { (_: JSONValue, _) in counts.withLock { $0[route, default: 0] += 1 } }
            }
            let configuration = RedisPubSubConfiguration(connection: redis)
            let server = RedisServerTransport(configuration: configuration, logger: Self.quietLogger)
            try await Self.withWorker(server, router: router) {
                try await server.waitUntilSubscribed()
                let client = CourierClient(transport: RedisClientTransport(configuration: configuration,
                                                                           logger: Self.quietLogger))
                for channel in ["orders.created", "orders.shipped", "users.created", "done"] {
                    try await client.emit("\(prefix).\(channel)", json: 1)
                }
                // One subscriber connection receives in publication order: once the last is handled, any second
                // copy of the others has been too.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(10)
                while counts.withLock({ $0["\(prefix).done"] }) == nil, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(10))
                }
                try await Task.sleep(for: .milliseconds(100))
                #expect(counts.withLock { $0 } == [
                    "\(prefix).orders.created": 1, "\(prefix).orders.*": 1, "\(prefix).*.created": 1, "\(prefix).done": 1,
                ])
                await client.shutdown()
            }
        }
    }

    /// Entries whose handlers finish during a graceful shutdown are acknowledged before the worker stops: none is
    /// left pending to be handled again.
    @Test func aGracefulShutdownAcknowledgesTheEntriesItLetFinish() async throws {
        try await withRedis { redis in
            let stream = uniqueName("drain")
            var configuration = RedisStreamsConfiguration(connection: redis, blockTime: .milliseconds(200))
            configuration.claimInterval = .seconds(60)
            let started = Atomic(0)
            var router = MessageRouter()
            router.onEvent(stream) { (_: JSONValue, _) in
                started.add(1, ordering: .relaxed)
                try? await Task.sleep(for: .milliseconds(300))
            }
            let server = RedisStreamsServerTransport(configuration: configuration, logger: Self.quietLogger)
            let worker = Microservice(
                router: router,
                transport: server,
                configuration: MicroserviceConfiguration(gracefulShutdownTimeout: .seconds(10)),
                logger: Self.quietLogger
            )
            let group = ServiceGroup(services: [worker], logger: Self.quietLogger)
            let running = Task { try await group.run() }
            let client = CourierClient(transport: RedisStreamsClientTransport(configuration: configuration,
                                                                              logger: Self.quietLogger))
            let redisClient = try await RedisConnection.connect(configuration: redis)
            try await server.waitUntilReading()
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            for index in 0..<5 { try await client.emit(stream, json: .integer(Int64(index))) }
            while started.load(ordering: .relaxed) < 5, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            await group.triggerGracefulShutdown()
            try await running.value
            let pending = try await redisClient.send(["XPENDING", RESPArgument(stream), RESPArgument(configuration.group)])
            #expect(pending.array?.first?.int == 0, "entries left pending: \(pending)")
            _ = try await redisClient.send(["DEL", RESPArgument(stream)])
            await redisClient.close()
            await client.shutdown()
        }
    }

    /// A request claimed from a worker that died is handled again even if the caller's original timeout has
    /// passed: that worker's handler may have extended the deadline, and the caller may still be waiting.
    @Test func aClaimedRequestIsHandledEvenPastItsOriginalTimeout() async throws {
        try await withRedis { redis in
            let stream = uniqueName("claimed")
            let configuration = Self.quickClaims(redis, block: .milliseconds(200), idle: .milliseconds(300))
            let redisClient = try await RedisConnection.connect(configuration: redis)
            _ = try await redisClient.send(["XGROUP", "CREATE", RESPArgument(stream), RESPArgument(configuration.group),
                                            "0", "MKSTREAM"])
            var packet = ByteBuffer()
            NestJSEnvelope.encode(WireRequest(pattern: stream, payload: ByteBuffer(string: "1"), correlationID: "c1",
                                              timeout: .milliseconds(100)), into: &packet)
            _ = try await redisClient.send(["XADD", RESPArgument(stream), "*", "packet", RESPArgument(String(buffer: packet)),
                                            "reply-to", RESPArgument(uniqueName("nobody"))])
            // A worker that took it, then died.
            _ = try await redisClient.send(["XREADGROUP", "GROUP", RESPArgument(configuration.group), "dead",
                                            "COUNT", "1", "STREAMS", RESPArgument(stream), ">"])
            try await Task.sleep(for: .milliseconds(200))  // past the caller's original 100 ms

            let handled = Atomic(0)
            var router = MessageRouter()
            router.on(MessagePattern<Int, Int>(stream)) { value, _ in
                handled.add(1, ordering: .relaxed)
                return value
            }
            let server = RedisStreamsServerTransport(configuration: configuration, logger: Self.quietLogger)
            try await Self.withWorker(server, router: router) {
                try await server.waitUntilReading()
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(10)
                while handled.load(ordering: .relaxed) == 0, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
                #expect(handled.load(ordering: .relaxed) == 1)
            }
            _ = try await redisClient.send(["DEL", RESPArgument(stream)])
            await redisClient.close()
        }
    }

    /// A worker whose handlers are all busy takes no more entries than it can start: none ages as idle in it, so
    /// another worker never claims entries a healthy one still holds, and each entry is handled once.
    @Test func aBusyWorkerHoldsNoEntriesAnotherWouldClaim() async throws {
        try await withRedis { redis in
            let stream = uniqueName("busy")
            // 8 jobs of 400 ms queued in one worker take 3.2 s.
            let configuration = Self.quickClaims(redis, block: .milliseconds(100), idle: .milliseconds(2_000))
            let handled = Mutex<[Int: Int]>([:])
            var router = MessageRouter()
            router.onEvent(stream) { (job: JSONValue, _) in
                let number = Int(job.intValue ?? -1)
                handled.withLock { $0[number, default: 0] += 1 }
                try? await Task.sleep(for: .milliseconds(400))
            }
            func worker() -> Microservice {
                var one = configuration
                one.consumer = uniqueName("consumer")
                return Microservice(router: router,
                                    transport: RedisStreamsServerTransport(configuration: one, logger: Self.quietLogger),
                                    configuration: MicroserviceConfiguration(maxConcurrentHandlers: 1),
                                    logger: Self.quietLogger)
            }
            let client = CourierClient(transport: RedisStreamsClientTransport(configuration: configuration,
                                                                              logger: Self.quietLogger))
            for job in 0..<8 { try await client.emit(stream, json: .integer(Int64(job))) }
            let (workerA, workerB) = (worker(), worker())
            let first = Task { try await workerA.run() }
            try await Task.sleep(for: .milliseconds(300))  // the first worker has read what it reads at once
            let second = Task { try await workerB.run() }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(15)
            while handled.withLock({ $0.count }) < 8, clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(2_500))  // long enough for a claim of an entry held too long
            first.cancel()
            second.cancel()
            _ = try? await first.value
            _ = try? await second.value
            let counts = handled.withLock { $0 }
            #expect(counts.count == 8)
            #expect(counts.values.allSatisfy { $0 == 1 }, "handled more than once: \(counts.filter { $0.value > 1 })")
            try await Self.delete(stream, on: redis)
            await client.shutdown()
        }
    }

    /// A handler that runs longer than the claim idle time keeps its entry: its worker renews the claim while it
    /// runs, so another worker does not claim the entry and handle it a second time. Once the worker that held it
    /// dies, the entry is claimed as before.
    @Test func aHandlerLongerThanTheClaimIdleTimeKeepsItsEntry() async throws {
        try await withRedis { redis in
            let stream = uniqueName("long")
            let configuration = Self.quickClaims(redis, block: .milliseconds(100), idle: .milliseconds(1_000))
            let runs = Atomic<Int>(0)
            var router = MessageRouter()
            router.onEvent(stream) { (_: JSONValue, _) in
                runs.add(1, ordering: .relaxed)
                // Eight claim idle times (the test looks at 3 s, with room for a slow machine); cancelled (its worker
                // dies), it throws and leaves the entry pending.
                try await Task.sleep(for: .seconds(8))
            }
            func worker() -> Microservice {
                var one = configuration
                one.consumer = uniqueName("consumer")
                return Microservice(router: router,
                                    transport: RedisStreamsServerTransport(configuration: one, logger: Self.quietLogger),
                                    logger: Self.quietLogger)
            }
            let client = CourierClient(transport: RedisStreamsClientTransport(configuration: configuration,
                                                                              logger: Self.quietLogger))
            try await client.emit(stream, json: .integer(1))
            let (workerA, workerB) = (worker(), worker())
            let first = Task { try await workerA.run() }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while runs.load(ordering: .relaxed) == 0, clock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            let second = Task { try await workerB.run() }
            try await Task.sleep(for: .seconds(3))  // three claim idle times, before the handler ends
            #expect(runs.load(ordering: .relaxed) == 1)
            first.cancel()  // dies with the handler still running: the entry is left pending, no longer renewed
            _ = try? await first.value
            while runs.load(ordering: .relaxed) < 2, clock.now < deadline + .seconds(5) {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(runs.load(ordering: .relaxed) == 2)
            second.cancel()
            _ = try? await second.value
            try await Self.delete(stream, on: redis)
            await client.shutdown()
        }
    }

    /// A worker whose clock runs an hour ahead of Redis's still handles fresh requests: a request's age is judged on
    /// Redis's clock (the time in its entry's id), measured against the worker's own.
    @Test func aWorkerWhoseClockIsAheadOfRedisHandlesFreshRequests() async throws {
        try await withRedis { redis in
            let prefix = uniqueName("skew") + ":"
            let configuration = RedisStreamsConfiguration(connection: redis, streamPrefix: prefix,
                                                          blockTime: .milliseconds(100))
            let server = RedisStreamsServerTransport(configuration: configuration, logger: Self.quietLogger) {
                RedisStreamsServerTransport.nowMilliseconds() + 3_600_000
            }
            try await Self.withWorker(server) {
                try await server.waitUntilReading()
                let client = CourierClient(transport: RedisStreamsClientTransport(configuration: configuration,
                                                                                  logger: Self.quietLogger))
                #expect(try await client.send(ExampleService.sum, [1, 2], timeout: .seconds(5)) == 3)
                await client.shutdown()
            }
            try await Self.delete(configuration.stream(for: ExampleService.sum.name), on: redis)
        }
    }

    /// `unwrap` hands out the connection the transport uses, on which any command runs.
    @Test func unwrapGivesAConnectionForAnyCommand() async throws {
        try await withRedis { connection in
            let pubsub = CourierClient(
                transport: RedisClientTransport(configuration: RedisPubSubConfiguration(connection: connection),
                                                logger: Self.quietLogger)
            )
            let streams = CourierClient(
                transport: RedisStreamsClientTransport(configuration: RedisStreamsConfiguration(connection: connection),
                                                       logger: Self.quietLogger)
            )
            let key = uniqueName("unwrap")
            for client in [pubsub, streams] {
                let redis = try await client.unwrap(as: RedisConnection.self)
                _ = try await redis.send(["SET", RESPArgument(key), "v"])
                #expect(try await redis.send(["GET", RESPArgument(key)]).string == "v")
                _ = try await redis.send(["DEL", RESPArgument(key)])
                await client.shutdown()
            }
        }
    }
}
