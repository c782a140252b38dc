//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierExample
import CourierRedis
import Synchronization
import Testing

/// Redis pub/sub emits with and without waiting for Redis's answer to each `PUBLISH`
/// (`RedisPubSubConfiguration.awaitsEventAcknowledgement`).
@Suite struct RedisEventAcknowledgementTests {
    final class HandledCount: Sendable {
        let value = Atomic<Int>(0)
    }

    @Test func urlOptionsSetAcknowledgementsAndTheirLimit() throws {
        let defaults = try RedisPubSubConfiguration(url: TransportURL("redis://127.0.0.1:6379"))
        #expect(defaults.awaitsEventAcknowledgement)
        #expect(defaults.maxUnacknowledgedEvents == 4096)

        let pipelined = try RedisPubSubConfiguration(
            url: TransportURL("redis://127.0.0.1:6379?eventAcks=false&maxUnacknowledgedEvents=16")
        )
        #expect(!pipelined.awaitsEventAcknowledgement)
        #expect(pipelined.maxUnacknowledgedEvents == 16)

        for bad in ["eventAcks=no", "maxUnacknowledgedEvents=0", "maxUnacknowledgedEvents=many"] {
            #expect(throws: CourierError.self) {
                try RedisPubSubConfiguration(url: TransportURL("redis://127.0.0.1:6379?\(bad)"))
            }
        }
    }

    /// While Redis answers nothing (`CLIENT PAUSE`), an emit that awaits acknowledgement waits for the pause to end;
    /// without acknowledgements, emits return at once until `maxUnacknowledgedEvents` are unanswered, then wait.
    @Test func unacknowledgedEmitsReturnAtOnceUntilTheirLimitThenWait() async throws {
        // A server of its own: pausing it must not stall other tests.
        try await withRedisServer { redis in
            var pipelined = RedisPubSubConfiguration(connection: redis.configuration)
            pipelined.awaitsEventAcknowledgement = false
            pipelined.maxUnacknowledgedEvents = 3
            let unacknowledged = CourierClient(transport: RedisClientTransport(configuration: pipelined))
            let acknowledged = CourierClient(
                transport: RedisClientTransport(configuration: RedisPubSubConfiguration(connection: redis.configuration))
            )
            // Connected before the pause.
            try await unacknowledged.emit(ExampleService.loadTick, 1)
            try await acknowledged.emit(ExampleService.loadTick, 1)
            // And that first unacknowledged event answered: still unanswered under load, it counted against the limit
            // below and the third emit waited out the pause. Answers come in order, so PING's comes after its.
            _ = try await unacknowledged.unwrap(as: RedisConnection.self).send(["PING"])
            let admin = try await RedisConnection.connect(configuration: redis.configuration)
            _ = try await admin.send(["CLIENT", "PAUSE", "1500", "ALL"])
            let clock = ContinuousClock()
            let start = clock.now

            for _ in 0..<3 { try await unacknowledged.emit(ExampleService.loadTick, 1) }
            let withinLimit = start.duration(to: clock.now)
            try await unacknowledged.emit(ExampleService.loadTick, 1)
            let pastLimit = start.duration(to: clock.now)
            #expect(withinLimit < .milliseconds(500), "3 unacknowledged emits took \(withinLimit)")
            #expect(pastLimit > .milliseconds(1000), "the 4th unacknowledged emit returned after \(pastLimit)")

            _ = try await admin.send(["CLIENT", "PAUSE", "800", "ALL"])
            let pausedAgain = clock.now
            try await acknowledged.emit(ExampleService.loadTick, 1)
            let waited = pausedAgain.duration(to: clock.now)
            #expect(waited > .milliseconds(500), "an acknowledged emit returned after \(waited)")

            await unacknowledged.shutdown()
            await acknowledged.shutdown()
            await admin.close()
        }
    }

    /// Commands sent without a promise are counted until answered, and their failures reach the owner of the count.
    @Test func countedCommandsAreAnsweredAndTheirFailuresReported() async throws {
        try await withRedisServer { redis in
            let muted = try await configurationWithoutPublish(on: redis)
            for (configuration, expectedFailures) in [(redis.configuration, 0), (muted, 3)] {
                let failures = HandledCount()
                let commands = RedisUnansweredCommands { _ in failures.value.add(1, ordering: .relaxed) }
                let connection = try await RedisConnection.connect(configuration: configuration)
                for _ in 0..<3 { connection.enqueue(["PUBLISH", "counted", "x"], countedIn: commands) }
                // Answers come in order: once PING is answered, the three PUBLISHes have been.
                _ = try await connection.send(["PING"])
                #expect(commands.unanswered == 0)
                #expect(failures.value.load(ordering: .relaxed) == expectedFailures)
                await connection.close()
            }
        }
    }

    /// A call whose request `PUBLISH` Redis refuses fails at once with the reason, instead of waiting for its timeout.
    @Test func aCallWhosePublishIsRefusedFailsAtOnce() async throws {
        try await withRedisServer { redis in
            let muted = try await configurationWithoutPublish(on: redis)
            let client = CourierClient(
                transport: RedisClientTransport(configuration: RedisPubSubConfiguration(connection: muted),
                                                logger: RedisTransportTests.quietLogger)
            )
            // The first call subscribes to the reply channel first; the second takes the usual path, with no task.
            for _ in 0..<2 {
                let started = ContinuousClock.now
                do {
                    _ = try await client.send(MessagePattern<Int, Int>("refused.call"), 1, timeout: .seconds(20))
                    Issue.record("a refused PUBLISH returned a reply")
                } catch let error as CourierError {
                    #expect(error.code == .transportUnavailable)
                    #expect(error.message.contains("could not publish 'refused.call'"))
                }
                #expect(ContinuousClock.now - started < .seconds(10))
            }
            await client.shutdown()
        }
    }

    /// A batch whose `PUBLISH`es Redis refuses fails with the reason when it awaits acknowledgements; without, it
    /// returns once the commands are queued, and their failures are only logged.
    @Test func aBatchWhosePublishesAreRefusedFailsWhenItAwaitsTheirAnswers() async throws {
        try await withRedisServer { redis in
            let muted = try await configurationWithoutPublish(on: redis)
            var pipelined = RedisPubSubConfiguration(connection: muted)
            pipelined.awaitsEventAcknowledgement = false
            let acknowledged = CourierClient(
                transport: RedisClientTransport(configuration: RedisPubSubConfiguration(connection: muted),
                                                logger: RedisTransportTests.quietLogger)
            )
            let unacknowledged = CourierClient(
                transport: RedisClientTransport(configuration: pipelined, logger: RedisTransportTests.quietLogger)
            )
            let error = await #expect(throws: CourierError.self) {
                try await acknowledged.emitBatch(ExampleService.loadTick, [1, 2, 3])
            }
            #expect(error?.code == .transportUnavailable)
            try await unacknowledged.emitBatch(ExampleService.loadTick, [1, 2, 3])
            await acknowledged.shutdown()
            await unacknowledged.shutdown()
        }
    }

    /// Events emitted without acknowledgements all reach the worker, in batches far past the limit.
    @Test func everyUnacknowledgedEventIsHandled() async throws {
        try await withRedis { connection in
            var configuration = RedisPubSubConfiguration(connection: connection)
            configuration.awaitsEventAcknowledgement = false
            configuration.maxUnacknowledgedEvents = 64
            // A channel of its own: other tests' workers on the same server must not count these events.
            let tick = EventPattern<Int>(uniqueName("acks.tick"))
            let handled = HandledCount()
            var router = MessageRouter()
            router.on(tick) { _, _ in handled.value.add(1, ordering: .relaxed) }
            let server = RedisServerTransport(configuration: configuration, logger: RedisTransportTests.quietLogger)
            let client = CourierClient(
                transport: RedisClientTransport(configuration: configuration, logger: RedisTransportTests.quietLogger)
            )
            let count = 2_000
            try await RedisTransportTests.withWorker(server, router: router) {
                try await server.waitUntilSubscribed()
                try await withThrowingDiscardingTaskGroup { group in
                    for _ in 0..<4 {
                        group.addTask {
                            for value in 0..<count / 8 { try await client.emit(tick, value) }
                        }
                    }
                    // And as much in batches, each far past the limit.
                    group.addTask {
                        for batch in 0..<5 { try await client.emitBatch(tick, Array(batch * 200..<(batch + 1) * 200)) }
                    }
                }
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(10)
                while handled.value.load(ordering: .relaxed) < count, clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            #expect(handled.value.load(ordering: .relaxed) == count)
            await client.shutdown()
        }
    }
}
