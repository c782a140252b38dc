//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization
import Testing

@testable import CourierRedis

/// The queue between a subscriber's event loop and its consumer: order, backpressure with watermarks, the end, and
/// a consumer that stops.
@Suite struct RedisPubSubBufferTests {
    /// Counts the buffer's calls for more.
    final class Demand: Sendable {
        let calls = Atomic<Int>(0)
        var count: Int { calls.load(ordering: .relaxed) }
        func callAsFunction() { calls.add(1, ordering: .relaxed) }
    }

    private static func message(_ index: Int) -> RedisPubSubMessage {
        RedisPubSubMessage(channel: "c", payload: ByteBuffer(string: "\(index)"))
    }

    private static func index(_ message: RedisPubSubMessage?) -> Int? {
        message.flatMap { Int(String(buffer: $0.payload)) }
    }

    @Test func stopsTheProducerAtTheHighWatermarkAndResumesItAtTheLowOne() async {
        let demand = Demand()
        let buffer = RedisPubSubBuffer(highWatermark: 8, lowWatermark: 2) { demand() }
        for index in 0..<7 { #expect(buffer.deliver(Self.message(index))) }
        #expect(!buffer.deliver(Self.message(7)), "the 8th buffered message stops the producer")

        var received: [Int] = []
        for _ in 0..<5 { received.append(Self.index(await buffer.next()) ?? -1) }
        #expect(demand.count == 0, "3 still buffered, above the low watermark")
        received.append(Self.index(await buffer.next()) ?? -1)
        #expect(demand.count == 1, "down to 2: the producer is told once to go on")
        received.append(Self.index(await buffer.next()) ?? -1)
        received.append(Self.index(await buffer.next()) ?? -1)
        #expect(demand.count == 1)
        #expect(received == Array(0..<8))
    }

    @Test func aWaitingConsumerGetsTheNextMessageAndTheEndAfterWhatWasBuffered() async {
        let buffer = RedisPubSubBuffer(highWatermark: 8, lowWatermark: 2) {}
        let consumer = Task { () -> [Int] in
            var received: [Int] = []
            while let message = await buffer.next() { received.append(Self.index(message) ?? -1) }
            return received
        }
        for index in 0..<3 {
            _ = buffer.deliver(Self.message(index))
            await Task.yield()
        }
        buffer.finish()
        #expect(buffer.deliver(Self.message(99)), "nothing is buffered after the end")
        #expect(await consumer.value == [0, 1, 2])
        #expect(await buffer.next() == nil)
    }

    @Test func aCancelledConsumerEndsTheSequenceAndLetsAStoppedProducerReadOn() async {
        let demand = Demand()
        let buffer = RedisPubSubBuffer(highWatermark: 2, lowWatermark: 0) { demand() }
        _ = buffer.deliver(Self.message(0))
        #expect(!buffer.deliver(Self.message(1)))
        let consumer = Task { () -> Int? in
            _ = await buffer.next()
            _ = await buffer.next()
            // Now waiting: cancelling ends the wait with nil.
            return Self.index(await buffer.next())
        }
        // The two buffered messages were taken (the low watermark of 0 told the producer to go on once).
        while demand.count == 0 { await Task.yield() }
        consumer.cancel()
        #expect(await consumer.value == nil)
        // Nobody reads any more: messages are dropped, and the producer keeps reading.
        for index in 2..<10 { #expect(buffer.deliver(Self.message(index))) }
        #expect(await buffer.next() == nil)
    }

    @Test func droppingTheIteratorDropsLaterMessagesAndResumesAStoppedProducer() async {
        let demand = Demand()
        let buffer = RedisPubSubBuffer(highWatermark: 2, lowWatermark: 0) { demand() }
        let messages = RedisPubSubMessages(buffer: buffer)
        do {
            var iterator = messages.makeAsyncIterator()
            #expect(buffer.deliver(Self.message(0)))
            #expect(Self.index(await iterator.next()) == 0)
            _ = buffer.deliver(Self.message(1))
            #expect(!buffer.deliver(Self.message(2)))
            #expect(demand.count == 0)
            withExtendedLifetime(iterator) {}
        }
        // The iterator is gone: the producer, which was stopped, is told to go on, and what comes is dropped.
        #expect(demand.count == 1)
        for index in 3..<10 { #expect(buffer.deliver(Self.message(index))) }
        #expect(await buffer.next() == nil)
    }
}
