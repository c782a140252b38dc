//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A ``KafkaAssignedConsumer``'s messages in partition order, with backpressure.
///
/// Iterate it once, from one task: a second iterator is a programming error. When the reader falls behind by the
/// consumer's high watermark, the consumer pauses its partitions and resumes them once the reader is down to the
/// low watermark, exactly like ``KafkaConsumerEvents``. The sequence ends after ``KafkaAssignedConsumer/close()``.
public struct KafkaConsumerMessages: AsyncSequence, Sendable {
    public typealias Element = KafkaConsumerMessage
    public typealias Failure = Never

    /// The same event sequence ``KafkaConsumer`` uses; a manually assigned consumer only ever puts messages in it.
    let wrapped: ConsumerContext.Sequence

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(wrapped: wrapped.makeAsyncIterator())
    }

    /// Iterates a consumer's messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var wrapped: ConsumerContext.Sequence.AsyncIterator

        @concurrent public mutating func next() async -> KafkaConsumerMessage? {
            // Without a group there are no assignment or revocation events, but skipping them keeps this correct
            // should the shared poll step ever emit other kinds.
            while let event = await wrapped.next() {
                if let message = event.message { return message }
            }
            return nil
        }
    }
}
