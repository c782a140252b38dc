//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
@testable import CourierRedis
import Logging
import Testing

/// A pub/sub client's reply channels (`<pattern>.reply`): kept for later calls, let go once
/// `maxReplyChannels` are held and nothing waits on them.
@Suite(.serialized) struct RedisReplyChannelTests {
    static let echo = MessagePattern<Int, Int>("echo.*")

    /// The reply channels subscribed on `redis` now, by anyone.
    static func replyChannels(on redis: RedisConfiguration) async throws -> Set<String> {
        let connection = try await RedisConnection.connect(configuration: redis)
        let reply = try await connection.send(["PUBSUB", "CHANNELS", "*.reply"])
        await connection.close()
        guard case .array(let elements?) = reply else { return [] }
        return Set(elements.compactMap { element -> String? in
            guard case .bulkString(let name?) = element else { return nil }
            return String(buffer: name)
        })
    }

    /// Polls `replyChannels` until it equals `expected` (unsubscribing is asynchronous), for at most 10 s.
    static func waitForReplyChannels(_ expected: Set<String>, on redis: RedisConfiguration) async throws -> Set<String> {
        let deadline = ContinuousClock.now + .seconds(10)
        var current = try await replyChannels(on: redis)
        while current != expected, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            current = try await replyChannels(on: redis)
        }
        return current
    }

    static func client(_ redis: RedisConfiguration, maxReplyChannels: Int) -> CourierClient {
        let configuration = RedisPubSubConfiguration(connection: redis, maxReplyChannels: maxReplyChannels)
        return CourierClient(transport: RedisClientTransport(configuration: configuration,
                                                             logger: RedisTransportTests.quietLogger))
    }

    /// Past the limit, channels whose calls are all past their deadlines are unsubscribed when a new one is
    /// subscribed, and a pattern called again afterwards is subscribed again and answered.
    @Test func idleReplyChannelsAreLetGoPastTheLimitAndSubscribedAgainWhenCalled() async throws {
        try await withRedisServer { redis in
            var router = MessageRouter()
            router.on(Self.echo) { value, _ in value }
            let server = RedisServerTransport(configuration: RedisPubSubConfiguration(connection: redis.configuration),
                                              logger: RedisTransportTests.quietLogger)
            try await RedisTransportTests.withWorker(server, router: router) {
                try await server.waitUntilSubscribed()
                let client = Self.client(redis.configuration, maxReplyChannels: 3)
                try await withThrowingTaskGroup { group in
                    for n in 0..<5 {
                        group.addTask {
                            let answer = try await client.send(MessagePattern<Int, Int>("echo.\(n)"), n,
                                                               timeout: .seconds(5))
                            #expect(answer == n)
                        }
                    }
                    try await group.waitForAll()
                }
                let five = Set((0..<5).map { "echo.\($0).reply" })
                #expect(try await Self.replyChannels(on: redis.configuration) == five,
                        "a channel's subscription is kept after its call")

                // Every call above was sent before it was answered, so it is now more than a second past its deadline.
                try await Task.sleep(for: .milliseconds(6100))
                #expect(try await client.send(MessagePattern<Int, Int>("echo.5"), 5, timeout: .seconds(10)) == 5)
                let afterLimit = try await Self.waitForReplyChannels(["echo.5.reply"], on: redis.configuration)
                #expect(afterLimit == ["echo.5.reply"], "idle reply channels must be let go past the limit")

                // A pattern whose channel was let go is subscribed again on its next call.
                #expect(try await client.send(MessagePattern<Int, Int>("echo.0"), 10, timeout: .seconds(10)) == 10)
                #expect(try await Self.replyChannels(on: redis.configuration) == ["echo.0.reply", "echo.5.reply"])
                await client.shutdown()
            }
        }
    }

    /// A channel with a call still waiting is kept past the limit, whether the call is within its own deadline or
    /// within one its handler extended: both replies arrive after other channels were let go.
    @Test func replyChannelsWithCallsStillWaitingAreKept() async throws {
        try await withRedisServer { redis in
            var router = MessageRouter()
            router.on(Self.echo) { value, _ in value }
            router.on(MessagePattern<Int, Int>("hold.plain")) { value, _ in
                try await Task.sleep(for: .milliseconds(7500))
                return value
            }
            router.on(MessagePattern<Int, Int>("hold.extended")) { value, context in
                try await context.extendDeadline(by: .seconds(20))
                try await Task.sleep(for: .milliseconds(7500))
                return value
            }
            let server = RedisServerTransport(configuration: RedisPubSubConfiguration(connection: redis.configuration),
                                              logger: RedisTransportTests.quietLogger)
            try await RedisTransportTests.withWorker(server, router: router) {
                try await server.waitUntilSubscribed()
                let client = Self.client(redis.configuration, maxReplyChannels: 2)
                #expect(try await client.send(MessagePattern<Int, Int>("echo.idle"), 1, timeout: .seconds(5)) == 1)
                // Sent after echo.idle was answered, so echo.idle is idle when these are 6 s old.
                let started = ContinuousClock.now
                let plain = Task { try await client.send(MessagePattern<Int, Int>("hold.plain"), 2, timeout: .seconds(20)) }
                // Without its handler's extension this call's channel would be idle 6 s after it was sent; its reply
                // comes 7.5 s after the worker got it.
                let extended = Task {
                    try await client.send(MessagePattern<Int, Int>("hold.extended"), 3, timeout: .seconds(5))
                }

                try await Task.sleep(until: started + .milliseconds(6300))
                // Three channels held, limit two: subscribing a fourth lets the idle one go.
                #expect(try await client.send(MessagePattern<Int, Int>("echo.new"), 4, timeout: .seconds(10)) == 4)
                let kept: Set = ["hold.plain.reply", "hold.extended.reply", "echo.new.reply"]
                #expect(try await Self.waitForReplyChannels(kept, on: redis.configuration) == kept)

                #expect(try await plain.value == 2)
                #expect(try await extended.value == 3)
                await client.shutdown()
            }
        }
    }

    @Test func theLimitIsReadFromTheURL() throws {
        let configuration = try RedisPubSubConfiguration(url: TransportURL("redis://127.0.0.1:6379?maxReplyChannels=7"))
        #expect(configuration.maxReplyChannels == 7)
        #expect(RedisPubSubConfiguration().maxReplyChannels == 1000)
        #expect(throws: CourierError.self) {
            _ = try RedisPubSubConfiguration(url: TransportURL("redis://127.0.0.1:6379?maxReplyChannels=0"))
        }
    }
}
