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

/// Delivery guarantees of the Streams worker: entries waiting for a handler slot, entries deleted while pending.
@Suite(.serialized) struct RedisStreamsDeliveryTests {
    /// A worker reads up to its free handler slots *per stream*: with one slot and three streams it takes three
    /// entries; the first runs, the second waits for the slot and the third waits behind it. While they wait, the
    /// worker holds them and must renew their claims (docs/redis.md: "While a worker holds an entry (its handler running or waiting for a
    /// slot) it renews its claim"), or another worker claims it as idle and it is handled twice.
    @Test func anEntryWaitingForAHandlerSlotIsNotClaimedByAnotherWorker() async throws {
        try await withRedis { redis in
            let streams = [uniqueName("slot-a"), uniqueName("slot-b"), uniqueName("slot-c")]
            let configuration = RedisTransportTests.quickClaims(redis, block: .milliseconds(100),
                                                                idle: .seconds(2))
            let runs = Mutex<[String: Int]>([:])
            var router = MessageRouter()
            for stream in streams {
                router.onEvent(stream) { (_: JSONValue, _) in
                    runs.withLock { $0[stream, default: 0] += 1 }
                    try? await Task.sleep(for: .milliseconds(4_000))  // two claim idle times
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
            let deadline = clock.now + .seconds(30)
            while runs.withLock({ $0.count }) < 3, clock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(5_000))  // room for A to run the third entry too
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
    /// A worker died holding three entries, and the middle one was deleted from the stream since (XDEL; MAXLEN
    /// trimming does the same). The next worker claims and handles the other two once each, and nothing stays
    /// pending: the deleted entry has nothing left to handle. (Redis 7, which the tests run, drops it from the
    /// pending list itself as it is claimed; before 7 the worker acknowledges it, or it stays pending for good.)
    @Test func anEntryDeletedWhilePendingIsNotHandledAndLeavesNothingPending() async throws {
        try await withRedis { redis in
            let stream = uniqueName("deleted")
            let configuration = RedisTransportTests.quickClaims(redis, block: .milliseconds(100),
                                                                idle: .milliseconds(300))
            let commands = try await RedisConnection.connect(configuration: redis)
            _ = try await commands.send(["XGROUP", "CREATE", RESPArgument(stream), RESPArgument(configuration.group),
                                         "0", "MKSTREAM"])
            var ids: [String] = []
            for value in 1...3 {
                var packet = ByteBuffer()
                NestJSEnvelope.encode(WireRequest(pattern: stream, payload: ByteBuffer(string: "\(value)"),
                                                  correlationID: nil), into: &packet)
                let id = try await commands.send(["XADD", RESPArgument(stream), "*", "packet",
                                                  RESPArgument(String(buffer: packet))])
                ids.append(try #require(id.string))
            }
            // A worker that read the three, then died; then the middle one is deleted.
            _ = try await commands.send(["XREADGROUP", "GROUP", RESPArgument(configuration.group), "dead",
                                         "COUNT", "3", "STREAMS", RESPArgument(stream), ">"])
            _ = try await commands.send(["XDEL", RESPArgument(stream), RESPArgument(ids[1])])
            try await Task.sleep(for: .milliseconds(400))  // past the claim idle time

            let handled = Mutex<[Int]>([])
            var router = MessageRouter()
            router.on(EventPattern<Int>(stream)) { value, _ in handled.withLock { $0.append(value) } }
            let server = RedisStreamsServerTransport(configuration: configuration,
                                                     logger: RedisTransportTests.quietLogger)
            try await RedisTransportTests.withWorker(server, router: router) {
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(10)
                while clock.now < deadline {
                    let pending = try await commands.send(["XPENDING", RESPArgument(stream),
                                                           RESPArgument(configuration.group)])
                    if handled.withLock({ $0.count }) >= 2, pending.array?.first?.int == 0 { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
            }
            #expect(handled.withLock { $0.sorted() } == [1, 3])
            let pending = try await commands.send(["XPENDING", RESPArgument(stream), RESPArgument(configuration.group)])
            #expect(pending.array?.first?.int == 0, "still pending: \(pending)")
            _ = try await commands.send(["DEL", RESPArgument(stream)])
            await commands.close()
        }
    }
}
