//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A ``KafkaConsumer``'s ordered events, with backpressure.
///
/// Iterate it once, from one task: a second iterator is a programming error. When the reader falls behind by the
/// consumer's high watermark, the consumer pauses its partitions (it keeps polling, so it stays in its group) and
/// resumes them once the reader is down to the low watermark. The sequence ends after ``KafkaConsumer/close()``.
public struct KafkaConsumerEvents: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerEvent
    public typealias Failure = Never

    let queue: ConsumerEventQueue

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(cursor: ConsumerEventQueue.Cursor(queue))
    }

    /// Iterates a consumer's events. It takes them from the poll thread a batch at a time, so only an empty batch
    /// suspends, and it runs on its caller's executor.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var cursor: ConsumerEventQueue.Cursor

        public mutating func next() async -> KafkaConsumerEvent? {
            await cursor.next()
        }
    }
}
