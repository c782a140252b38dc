//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// The events a consumer's poll thread hands to its one reader, in the batches it polled them, with high/low
/// watermark backpressure.
///
/// It replaces `NIOAsyncSequenceProducer`, whose `next()` takes one element at a time, each inside
/// `withTaskCancellationHandler` (a status record added and removed under the task's lock) and with executor hops
/// around it: measured on a worker handling Kafka events, four `swift_task_switch` calls per record. Here the
/// reader takes a whole batch under one lock, and ``KafkaConsumerEvents`` serves its elements without suspending.
///
/// Backpressure follows the same rule as NIO's `HighLowWatermark`: a yield that leaves ``highWatermark`` or more
/// events buffered returns `.stopProducing`, and the delegate's `produceMore()` runs once the reader has taken the
/// buffer down to ``lowWatermark``. Events the reader has taken but not yet consumed (at most one batch) are not
/// counted.
final class ConsumerEventQueue: Sendable {
    enum YieldResult {
        case produceMore
        case stopProducing
        /// The queue has finished or its reader has gone: the events were dropped.
        case dropped
    }

    private struct State {
        var batches = CircularBuffer<[KafkaConsumerEvent]>(initialCapacity: 16)
        var count = 0
        var reader: UnsafeContinuation<[KafkaConsumerEvent], Never>?
        /// The producer finished: the reader gets what is buffered, then the end.
        var finished = false
        /// The reader was cancelled or went away: nothing is buffered or delivered any more.
        var terminated = false
        /// Whether the producer was last told to produce more.
        var producing = true
    }

    private let state = Mutex(State())
    let lowWatermark: Int
    let highWatermark: Int
    private let delegate: ConsumerBackPressure

    init(lowWatermark: Int, highWatermark: Int, delegate: ConsumerBackPressure) {
        self.lowWatermark = lowWatermark
        self.highWatermark = highWatermark
        self.delegate = delegate
    }

    /// Appends a batch of events, or hands it straight to a waiting reader.
    func yield(contentsOf events: [KafkaConsumerEvent]) -> YieldResult {
        if events.isEmpty { return .produceMore }
        let (reader, result) = state.withLock { state -> (UnsafeContinuation<[KafkaConsumerEvent], Never>?, YieldResult) in
            if state.finished || state.terminated { return (nil, .dropped) }
            if let reader = state.reader {
                // A reader waits only on an empty buffer.
                state.reader = nil
                return (reader, .produceMore)
            }
            state.batches.append(events)
            state.count += events.count
            if state.count >= highWatermark {
                state.producing = false
                return (nil, .stopProducing)
            }
            return (nil, .produceMore)
        }
        reader?.resume(returning: events)
        return result
    }

    /// Ends the queue: the reader gets what is buffered, then the end. Idempotent.
    func finish() {
        let reader = state.withLock { state -> UnsafeContinuation<[KafkaConsumerEvent], Never>? in
            state.finished = true
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume(returning: [])
    }

    /// The next batch, waiting for one; empty once the queue has ended. One reader at a time.
    ///
    /// A cancelled reader ends the queue for good, as NIO's sequence does: the worker's serve loop ends this way.
    func take() async -> [KafkaConsumerEvent] {
        if let ready = takeBuffered() { return ready }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                if let ready = takeBuffered(orWait: continuation) { continuation.resume(returning: ready) }
            }
        } onCancel: {
            terminate()
        }
    }

    /// The reader has gone (cancelled, or its iterator released): drops what is buffered and refuses more.
    func terminate() {
        let (reader, first) = state.withLock { state -> (UnsafeContinuation<[KafkaConsumerEvent], Never>?, Bool) in
            let first = !state.terminated
            state.terminated = true
            state.batches.removeAll()
            state.count = 0
            defer { state.reader = nil }
            return (state.reader, first)
        }
        reader?.resume(returning: [])
        if first { delegate.didTerminate() }
    }

    /// A buffered batch, or the end (`[]`), or nil when the reader must wait; with a continuation, a nil result means
    /// it was stored and will be resumed.
    private func takeBuffered(orWait continuation: UnsafeContinuation<[KafkaConsumerEvent], Never>? = nil)
        -> [KafkaConsumerEvent]?
    {
        let (batch, resume) = state.withLock { state -> ([KafkaConsumerEvent]?, Bool) in
            if state.terminated { return ([], false) }
            if let batch = state.batches.popFirst() {
                state.count -= batch.count
                let resume = !state.producing && state.count <= lowWatermark
                if resume { state.producing = true }
                return (batch, resume)
            }
            if state.finished { return ([], false) }
            if let continuation {
                // A cancellation before this point has already terminated the queue (checked above); one after it
                // finds this reader and wakes it.
                precondition(state.reader == nil, "a Kafka consumer's events have one reader")
                state.reader = continuation
            }
            return (nil, false)
        }
        if resume { delegate.produceMore() }
        return batch
    }
}

extension ConsumerEventQueue {
    /// What an iterator holds: releasing the last iterator tells the queue its reader has gone, as NIO's sequence
    /// does, so the poll thread keeps the assignment paused instead of fetching for nobody.
    final class Reader: Sendable {
        let queue: ConsumerEventQueue

        init(_ queue: ConsumerEventQueue) { self.queue = queue }

        deinit { queue.terminate() }
    }

    /// Serves one reader's events batch by batch: only an empty batch suspends.
    struct Cursor {
        private let reader: Reader
        private var batch: [KafkaConsumerEvent] = []
        private var index = 0

        init(_ queue: ConsumerEventQueue) { reader = Reader(queue) }

        mutating func next() async -> KafkaConsumerEvent? {
            if index == batch.count {
                batch = await reader.queue.take()
                index = 0
                if batch.isEmpty { return nil }
            }
            defer { index += 1 }
            return batch[index]
        }
    }
}
