//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierRedis
import NIOCore
import Testing

/// `RedisSubscriber` against a real `redis-server`.
@Suite struct RedisSubscriberTests {
    @Test func subscribeReturnsOnceConfirmedThenReceivesWhatIsPublished() async throws {
        try await withRedis { configuration in
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let collector = MessageCollector(subscriber)
            let channel = uniqueName("channel")
            try await subscriber.subscribe([channel])
            // Confirmed means registered: the very next PUBLISH reaches this subscriber.
            #expect(try await publisher.send(["PUBLISH", RESPArgument(channel), RESPArgument(bytes: [0, 13, 10, 1])]).int == 1)
            let messages = try await collector.waitFor(count: 1)
            #expect(messages == [RedisPubSubMessage(channel: channel, payload: ByteBuffer(bytes: [0, 13, 10, 1]))])
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func patternSubscriptionsDeliverThePatternAndTheChannel() async throws {
        try await withRedis { configuration in
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let collector = MessageCollector(subscriber)
            let prefix = uniqueName("news")
            try await subscriber.subscribe(patterns: ["\(prefix).*"])
            #expect(try await publisher.send(["PUBLISH", RESPArgument("\(prefix).sport"), "goal"]).int == 1)
            #expect(try await publisher.send(["PUBLISH", RESPArgument("\(prefix)-other"), "ignored"]).int == 0)
            let messages = try await collector.waitFor(count: 1)
            #expect(
                messages == [
                    RedisPubSubMessage(channel: "\(prefix).sport", pattern: "\(prefix).*", payload: ByteBuffer(string: "goal"))
                ]
            )
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func unsubscribeStopsDelivery() async throws {
        try await withRedis { configuration in
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let first = uniqueName("first")
            let second = uniqueName("second")
            try await subscriber.subscribe([first, second])
            try await subscriber.subscribe(patterns: ["\(first)*"])
            try await subscriber.unsubscribe([first])
            try await subscriber.unsubscribe(patterns: ["\(first)*"])
            #expect(try await publisher.send(["PUBLISH", RESPArgument(first), "x"]).int == 0)
            #expect(try await publisher.send(["PUBLISH", RESPArgument(second), "x"]).int == 1)
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func aSlowConsumerPushesBackAndLosesNothing() async throws {
        try await withRedis { configuration in
            var configuration = configuration
            configuration.subscriberBufferSize = 8
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let channel = uniqueName("flood")
            try await subscriber.subscribe([channel])
            // Publish far more than the buffer holds before anyone reads; Redis keeps the rest while we do not read.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<2_000 {
                    group.addTask { _ = try await publisher.send(["PUBLISH", RESPArgument(channel), RESPArgument(index)]) }
                }
                try await group.waitForAll()
            }
            var received: [Int] = []
            for await message in subscriber.messages {
                received.append(Int(String(buffer: message.payload)) ?? -1)
                if received.count == 2_000 { break }
            }
            #expect(received.count == 2_000)
            #expect(Set(received) == Set(0..<2_000))
            await subscriber.close()
            await publisher.close()
        }
    }

    /// While the consumer is behind (its buffer full, reads held back), a SUBSCRIBE still gets its confirmation
    /// instead of timing out and closing the connection, and no message is lost.
    @Test func subscribingWhileTheConsumerIsBehindIsConfirmed() async throws {
        try await withRedis { configuration in
            var configuration = configuration
            configuration.subscriberBufferSize = 4
            configuration.commandTimeout = .seconds(2)
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let first = uniqueName("behind")
            let second = uniqueName("later")
            try await subscriber.subscribe([first])
            for index in 0..<50 { _ = try await publisher.send(["PUBLISH", RESPArgument(first), RESPArgument(index)]) }
            try await Task.sleep(for: .milliseconds(100))  // the buffer fills and reads are held back
            try await subscriber.subscribe([second])
            #expect(try await publisher.send(["PUBLISH", RESPArgument(second), "last"]).int == 1)
            var received: [String] = []
            for await message in subscriber.messages {
                received.append(String(buffer: message.payload))
                if received.count == 51 { break }
            }
            #expect(received == (0..<50).map(String.init) + ["last"])
            await subscriber.close()
            await publisher.close()
        }
    }

    @Test func closingEndsTheMessageSequence() async throws {
        try await withRedis { configuration in
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            try await subscriber.subscribe([uniqueName("quiet")])
            let drained = Task { () -> Int in
                var count = 0
                for await _ in subscriber.messages { count += 1 }
                return count
            }
            await subscriber.close()
            #expect(await drained.value == 0)
            let error = await courierError { try await subscriber.subscribe([uniqueName("late")]) }
            #expect(error?.code == .transportUnavailable)
        }
    }
}
