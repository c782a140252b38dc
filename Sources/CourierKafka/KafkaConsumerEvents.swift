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

    let wrapped: ConsumerContext.Sequence

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(wrapped: wrapped.makeAsyncIterator())
    }

    /// Iterates a consumer's events.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var wrapped: ConsumerContext.Sequence.AsyncIterator

        @concurrent public mutating func next() async -> KafkaConsumerEvent? {
            await wrapped.next()
        }
    }
}
