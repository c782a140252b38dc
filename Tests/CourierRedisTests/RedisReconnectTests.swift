//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierExample
import CourierRedis
import NIOCore
import Synchronization
import Testing

/// A Redis that goes away and comes back, on a server of the test's own (stopped and restarted by PID).
@Suite struct RedisReconnectTests {
    @Test func callsFailFastWhileRedisIsDownAndEverythingServesAgainWhenItReturns() async throws {
        try await withRedisServer { server in
            var configuration = server.configuration
            configuration.reconnectBackoff = .init(initialDelay: .milliseconds(50), maximumDelay: .milliseconds(250))
            // Long timeouts, so that failing fast cannot be mistaken for a timeout.
            configuration.connectTimeout = .seconds(30)
            configuration.commandTimeout = .seconds(30)
            let redis = try await RedisConnection.connect(configuration: configuration)
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let collector = MessageCollector(subscriber)
            try await subscriber.subscribe(["restart-channel"])
            try await subscriber.subscribe(patterns: ["restart-pattern.*"])
            #expect(try await redis.send(["PUBLISH", "restart-channel", "before"]).int == 1)

            // Traffic from several tasks throughout: every call either succeeds or fails with transportUnavailable.
            let outcomes = TrafficOutcomes()
            let traffic = Task {
                await withTaskGroup(of: Void.self) { group in
                    for worker in 0..<4 {
                        group.addTask {
                            while !Task.isCancelled {
                                do {
                                    _ = try await redis.send(["INCR", "restart-counter-\(worker)"])
                                    outcomes.counts.withLock { $0.succeeded += 1 }
                                } catch let error as CourierError where error.code == .transportUnavailable {
                                    outcomes.counts.withLock { $0.unavailable += 1 }
                                } catch let error as CourierError where error.code == .cancelled && Task.isCancelled {
                                    break  // the test stopped the traffic
                                } catch {
                                    outcomes.counts.withLock { $0.other.append("\(error)") }
                                }
                                try? await Task.sleep(for: .milliseconds(2))
                            }
                        }
                    }
                }
            }
            try await Task.sleep(for: .milliseconds(200))
            await server.stop()

            // Down: each call fails fast with transportUnavailable instead of hanging.
            let clock = ContinuousClock()
            for _ in 0..<5 {
                let start = clock.now
                let error = await courierError { _ = try await redis.send(["PING"]) }
                #expect(error?.code == .transportUnavailable)
                // A third of the timeouts: a call that waited for any timeout would take at least 30 s; the bound
                // leaves room for a loaded machine.
                #expect(clock.now - start < .seconds(10), "a call took \(clock.now - start) while Redis was down")
                try await Task.sleep(for: .milliseconds(100))
            }
            let succeededBeforeRestart = outcomes.counts.withLock { $0.succeeded }

            // Back on the same port: calls succeed again without any action, within a bounded time.
            try await server.restart()
            let restarted = clock.now
            var pong: RESPValue?
            while pong == nil, clock.now - restarted < .seconds(10) {
                pong = try? await redis.send(["PING"])
                if pong == nil { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(pong == .simpleString("PONG"))
            print("RedisConnection served again \(clock.now - restarted) after the restart")

            // The subscriber subscribed again to its channel and its pattern by itself.
            var receivers = 0
            while receivers == 0, clock.now - restarted < .seconds(10) {
                receivers = (try? await redis.send(["PUBLISH", "restart-channel", "after"]).int) ?? 0
                if receivers == 0 { try await Task.sleep(for: .milliseconds(20)) }
            }
            #expect(receivers == 1)
            #expect(try await redis.send(["PUBLISH", "restart-pattern.x", "pattern-after"]).int == 1)
            let messages = try await collector.waitFor(count: 3)
            #expect(messages.map { String(buffer: $0.payload) } == ["before", "after", "pattern-after"])
            #expect(messages.last?.pattern == "restart-pattern.*")

            try await Task.sleep(for: .milliseconds(100))
            traffic.cancel()
            await traffic.value
            let final = outcomes.counts.withLock { $0 }
            #expect(final.other.isEmpty, "\(final.other.prefix(3))")
            #expect(final.unavailable > 0)
            #expect(final.succeeded > succeededBeforeRestart, "traffic resumed after the restart")
            await subscriber.close()
            await redis.close()
        }
    }

    /// Closes every subscriber connection and pauses all clients, in one transaction, so that no subscriber can
    /// reconnect before the pause holds its handshake.
    static func dropSubscribersAndPause(_ admin: RedisConnection, milliseconds: Int) async throws {
        _ = try await admin.send(["MULTI"])
        _ = try await admin.send(["CLIENT", "KILL", "TYPE", "pubsub"])
        _ = try await admin.send(["CLIENT", "PAUSE", RESPArgument(milliseconds), "ALL"])
        _ = try await admin.send(["EXEC"])
    }

    /// While a client's reply connection reconnects, a call fails at once instead of publishing a request whose
    /// reply nobody would receive and waiting for its timeout.
    @Test func aCallWhileTheReplyConnectionReconnectsFailsAtOnce() async throws {
        try await withRedisServer { server in
            var configuration = RedisPubSubConfiguration(connection: server.configuration)
            configuration.connection.reconnectBackoff = .init(initialDelay: .milliseconds(20),
                                                              maximumDelay: .milliseconds(50))
            let admin = try await RedisConnection.connect(configuration: server.configuration)
            let worker = Microservice(router: ExampleService.router(),
                                      transport: RedisServerTransport(configuration: configuration))
            let running = Task { try await worker.run() }
            let client = CourierClient(transport: RedisClientTransport(configuration: configuration))
            let clock = ContinuousClock()
            var first: Int?
            let deadline = clock.now + .seconds(10)
            while first == nil, clock.now < deadline {
                first = try? await client.send(ExampleService.sum, [1, 2], timeout: .seconds(2))
            }
            #expect(first == 3)
            // Drop the subscriber connections, and hold their handshakes (one transaction: no reconnection
            // can slip in between).
            try await Self.dropSubscribersAndPause(admin, milliseconds: 3_000)
            try await Task.sleep(for: .milliseconds(300))
            let started = clock.now
            let error = await courierError { _ = try await client.send(ExampleService.sum, [1], timeout: .seconds(20)) }
            #expect(error?.code == .transportUnavailable, "\(String(describing: error))")
            #expect(clock.now - started < .seconds(2), "waited \(clock.now - started)")
            // Once reconnected, calls go through again.
            var again: Int?
            while again == nil, clock.now < deadline + .seconds(10) {
                again = try? await client.send(ExampleService.sum, [2, 2], timeout: .seconds(2))
                if again == nil { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(again == 4)
            await client.shutdown()
            running.cancel()
            _ = try? await running.value
            await admin.close()
        }
    }

    /// An unsubscribe while a new connection's handshake is under way (it may already have subscribed the name)
    /// is sent after the handshake: the name stays unsubscribed.
    @Test func unsubscribingDuringAReconnectionHandshakeIsHonoured() async throws {
        try await withRedisServer { server in
            var configuration = server.configuration
            configuration.reconnectBackoff = .init(initialDelay: .milliseconds(20), maximumDelay: .milliseconds(50))
            let admin = try await RedisConnection.connect(configuration: configuration)
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let collector = MessageCollector(subscriber)
            try await subscriber.subscribe(["kept", "dropped"])
            // Drop the subscriber's connection, and hold every command (the new connection's handshake too).
            try await Self.dropSubscribersAndPause(admin, milliseconds: 1500)
            try await Task.sleep(for: .milliseconds(500))
            try await subscriber.unsubscribe(["dropped"])
            // Once the pause ends, the handshake subscribes both names again, then the UNSUBSCRIBE follows.
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            var kept = 0
            while kept != 1, clock.now < deadline {
                kept = try await admin.send(["PUBLISH", "kept", "ping"]).int ?? 0
                if kept != 1 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(kept == 1, "the subscriber did not come back")
            var dropped = -1
            while dropped != 0, clock.now < deadline {
                dropped = try await admin.send(["PUBLISH", "dropped", "unwanted"]).int ?? -1
                if dropped != 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(dropped == 0, "still subscribed to a channel it unsubscribed from")
            _ = try await collector.waitFor(count: 1)
            await subscriber.close()
            await admin.close()
        }
    }
}

/// What the background traffic saw, shared by its tasks.
private final class TrafficOutcomes: Sendable {
    let counts = Mutex<(succeeded: Int, unavailable: Int, other: [String])>((0, 0, []))
}
