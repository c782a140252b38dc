//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import CourierKafka

/// The queue between a consumer's poll thread and its reader: batches in order, watermark backpressure, and the
/// end on finish, cancellation or a released iterator.
@Suite struct ConsumerEventQueueTests {
    static func events(_ offsets: Range<Int64>) -> [KafkaConsumerEvent] {
        offsets.map { offset in
            .message(KafkaConsumerMessage(topic: "t", partition: 0, offset: offset, key: nil, value: nil, headers: []))
        }
    }

    @Test func deliversBatchesInOrderThenEndsAfterFinish() async {
        let queue = ConsumerEventQueue(lowWatermark: 2, highWatermark: 100, delegate: ConsumerBackPressure())
        #expect(queue.yield(contentsOf: Self.events(0..<3)) == .produceMore)
        #expect(queue.yield(contentsOf: Self.events(3..<5)) == .produceMore)
        queue.finish()
        #expect(queue.yield(contentsOf: Self.events(5..<6)) == .dropped)
        var cursor = ConsumerEventQueue.Cursor(queue)
        var offsets: [Int64] = []
        while let event = await cursor.next() { offsets.append(event.message!.offset) }
        #expect(offsets == [0, 1, 2, 3, 4])
        #expect(await cursor.next() == nil)
    }

    @Test func stopsAtTheHighWatermarkAndAsksForMoreAtTheLowOne() async {
        let backPressure = ConsumerBackPressure()
        backPressure.state.withLock { $0.demand = false }
        let queue = ConsumerEventQueue(lowWatermark: 2, highWatermark: 5, delegate: backPressure)
        #expect(queue.yield(contentsOf: Self.events(0..<3)) == .produceMore)
        #expect(queue.yield(contentsOf: Self.events(3..<5)) == .stopProducing)
        #expect(queue.yield(contentsOf: Self.events(5..<7)) == .stopProducing)
        var cursor = ConsumerEventQueue.Cursor(queue)
        // Taking the first batch leaves 4 buffered, above the low watermark: no demand yet.
        _ = await cursor.next()
        #expect(!backPressure.state.withLock { $0.demand })
        for _ in 0..<2 { _ = await cursor.next() }
        // Taking the second leaves 2: the producer is asked for more, once.
        _ = await cursor.next()
        #expect(backPressure.state.withLock { ($0.demand, $0.epoch) } == (true, 1))
        #expect(queue.yield(contentsOf: Self.events(7..<8)) == .produceMore)
    }

    @Test func aWaitingReaderGetsTheNextBatchAtOnce() async {
        let queue = ConsumerEventQueue(lowWatermark: 2, highWatermark: 5, delegate: ConsumerBackPressure())
        async let first: Int64? = {
            var cursor = ConsumerEventQueue.Cursor(queue)
            return await cursor.next()?.message?.offset
        }()
        // Until the reader waits, the batch is buffered; either way it gets it.
        try? await Task.sleep(for: .milliseconds(20))
        #expect(queue.yield(contentsOf: Self.events(7..<9)) == .produceMore)
        #expect(await first == 7)
    }

    @Test func cancellingTheReaderEndsTheQueueAndTellsTheDelegate() async {
        let backPressure = ConsumerBackPressure()
        let queue = ConsumerEventQueue(lowWatermark: 2, highWatermark: 5, delegate: backPressure)
        let reader = Task {
            var cursor = ConsumerEventQueue.Cursor(queue)
            return await cursor.next()
        }
        try? await Task.sleep(for: .milliseconds(20))
        reader.cancel()
        #expect(await reader.value == nil)
        #expect(!backPressure.state.withLock { $0.demand })
        #expect(queue.yield(contentsOf: Self.events(0..<1)) == .dropped)
    }

    @Test func releasingTheIteratorTellsTheDelegateNobodyReads() {
        let backPressure = ConsumerBackPressure()
        let queue = ConsumerEventQueue(lowWatermark: 2, highWatermark: 5, delegate: backPressure)
        do {
            _ = ConsumerEventQueue.Cursor(queue)
        }
        #expect(!backPressure.state.withLock { $0.demand })
        #expect(queue.yield(contentsOf: Self.events(0..<1)) == .dropped)
    }
}
