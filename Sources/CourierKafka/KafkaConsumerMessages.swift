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

    /// The same event queue ``KafkaConsumer`` uses; a manually assigned consumer only ever puts messages in it.
    let queue: ConsumerEventQueue

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(cursor: ConsumerEventQueue.Cursor(queue))
    }

    /// Iterates a consumer's messages. Like ``KafkaConsumerEvents/AsyncIterator``, it suspends only when no batch
    /// is buffered, and runs on its caller's executor.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var cursor: ConsumerEventQueue.Cursor

        public mutating func next() async -> KafkaConsumerMessage? {
            // Without a group there are no assignment or revocation events, but skipping them keeps this correct
            // should the shared poll step ever emit other kinds.
            while let event = await cursor.next() {
                if let message = event.message { return message }
            }
            return nil
        }
    }
}
