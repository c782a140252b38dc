//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
@testable import CourierRedis
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// Delivery guarantees of the Streams worker that the review found broken.
@Suite(.serialized) struct RedisStreamsDeliveryTests {
    /// A worker reads up to its free handler slots *per stream*: with one slot and three streams it takes three
    /// entries; the first runs, the second waits for the slot and the third waits behind it. While they wait, the
    /// worker holds them and must renew their claims (docs/redis.md: "While a worker holds an entry (its handler running or waiting for a
    /// slot) it renews its claim"), or another worker claims it as idle and it is handled twice.
    @Test func anEntryWaitingForAHandlerSlotIsNotClaimedByAnotherWorker() async throws {
        try await withRedis { redis in
            let streams = [uniqueName("slot-a"), uniqueName("slot-b"), uniqueName("slot-c")]
            let configuration = RedisTransportTests.quickClaims(redis, block: .milliseconds(100),
                                                                idle: .milliseconds(600))
            let runs = Mutex<[String: Int]>([:])
            var router = MessageRouter()
            for stream in streams {
                router.onEvent(stream) { (_: JSONValue, _) in
                    runs.withLock { $0[stream, default: 0] += 1 }
                    try? await Task.sleep(for: .milliseconds(1_500))  // two and a half claim idle times
                }
            }
            func worker() -> Microservice {
                var one = configuration
                one.consumer = uniqueName("consumer")
                return Microservice(router: router,
                                    transport: RedisStreamsServerTransport(configuration: one,
                                                                           logger: RedisTransportTests.quietLogger),
                                    configuration: MicroserviceConfiguration(maxConcurrentHandlers: 1),
                                    logger: RedisTransportTests.quietLogger)
            }
            let client = CourierClient(transport: RedisStreamsClientTransport(configuration: configuration,
                                                                              logger: RedisTransportTests.quietLogger))
            for stream in streams { try await client.emit(stream, json: .integer(1)) }
            let (workerA, workerB) = (worker(), worker())
            let runningA = Task { try await workerA.run() }
            try await Task.sleep(for: .milliseconds(300))  // A has read the three entries: one runs
            let runningB = Task { try await workerB.run() }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while runs.withLock({ $0.count }) < 3, clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(2_500))  // room for A to run the third entry too
            runningA.cancel()
            runningB.cancel()
            _ = try? await runningA.value
            _ = try? await runningB.value
            let counts = runs.withLock { $0 }
            #expect(counts.count == 3)
            #expect(counts.values.allSatisfy { $0 == 1 }, "handled more than once: \(counts)")
            for stream in streams { try await RedisTransportTests.delete(stream, on: redis) }
            await client.shutdown()
        }
    }
}
