//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// The messages a ``RedisSubscriber`` receives, in the order Redis sent them, across reconnections.
///
/// Backpressure: once ``RedisConfiguration/subscriberBufferSize`` messages wait here, the subscriber stops
/// reading from its socket until the buffer drains to a quarter of that. The sequence ends when the subscriber
/// is closed. Iterate it once (it is a single-consumer sequence); stopping the iteration (cancelling the iterating
/// task, or dropping the iterator) drops later messages.
///
/// Iterating runs on the caller's executor: `for await` asks for the next message without a hop to another
/// executor, which on a worker whose reader runs on an event loop spares a look-up of the task's executor
/// preference per message.
public struct RedisPubSubMessages: AsyncSequence, Sendable {
    /// A received message.
    public typealias Element = RedisPubSubMessage

    let buffer: RedisPubSubBuffer

    /// Iterates the messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        let consumer: Consumer

        /// The next message, or `nil` once the subscriber is closed or the iterating task is cancelled.
        public mutating func next(isolation actor: isolated (any Actor)?) async -> RedisPubSubMessage? {
            await consumer.buffer.next()
        }

        /// The next message, or `nil` once the subscriber is closed or the iterating task is cancelled.
        public mutating func next() async -> RedisPubSubMessage? {
            await consumer.buffer.next()
        }
    }

    /// Makes the (only) iterator.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(consumer: Consumer(buffer: buffer))
    }

    /// Ends the consumer's interest when the last copy of its iterator goes away.
    final class Consumer: Sendable {
        let buffer: RedisPubSubBuffer

        init(buffer: RedisPubSubBuffer) {
            self.buffer = buffer
        }

        deinit {
            buffer.terminate()
        }
    }
}

/// The messages waiting between a subscriber's event loop and its consumer, with the consumer's demand.
///
/// Courier's own queue rather than `NIOAsyncSequenceProducer`: that one's generic code runs unspecialised outside
/// NIOCore, and its `next()` is not isolated to its caller, so every message cost two executor hops.
final class RedisPubSubBuffer: Sendable {
    private struct State {
        var messages = CircularBuffer<RedisPubSubMessage>(initialCapacity: 16)
        var reader: UnsafeContinuation<RedisPubSubMessage?, Never>?
        /// No more messages will come (the subscriber closed).
        var isFinished = false
        /// The consumer stopped: messages are dropped.
        var isTerminated = false
        /// The producer was told to stop; it is told to go on once the buffer drains to the low watermark.
        var isProducerStopped = false
    }

    private let state = Mutex(State())
    private let highWatermark: Int
    private let lowWatermark: Int
    /// Tells the producer (on its event loop) that the consumer wants more.
    private let wantsMore: @Sendable () -> Void

    init(highWatermark: Int, lowWatermark: Int, wantsMore: @escaping @Sendable () -> Void) {
        self.highWatermark = highWatermark
        self.lowWatermark = lowWatermark
        self.wantsMore = wantsMore
    }

    /// Hands `message` to the consumer, or buffers it. Returns whether the producer may go on reading.
    func deliver(_ message: RedisPubSubMessage) -> Bool {
        let (reader, goOn) = state.withLock { state -> (UnsafeContinuation<RedisPubSubMessage?, Never>?, Bool) in
            // Finished: nothing comes after; terminated: nobody reads, so keep reading and discard.
            if state.isFinished || state.isTerminated { return (nil, true) }
            if let reader = state.reader {
                state.reader = nil
                return (reader, true)
            }
            state.messages.append(message)
            guard state.messages.count >= highWatermark else { return (nil, true) }
            state.isProducerStopped = true
            return (nil, false)
        }
        reader?.resume(returning: message)
        return goOn
    }

    /// The next message, waiting for one; `nil` once finished, or when the calling task is cancelled (which
    /// terminates the buffer).
    func next() async -> RedisPubSubMessage? {
        if let ready = take() { return ready }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                if let ready = take(orWaitWith: continuation) { continuation.resume(returning: ready) }
            }
        } onCancel: {
            terminate()
        }
    }

    /// Ends the sequence after the messages already buffered.
    func finish() {
        let reader = state.withLock { state -> UnsafeContinuation<RedisPubSubMessage?, Never>? in
            state.isFinished = true
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume(returning: nil)
    }

    /// The consumer stopped: drop what is buffered and what comes, and let the producer read again.
    func terminate() {
        let (reader, resume) = state.withLock { state -> (UnsafeContinuation<RedisPubSubMessage?, Never>?, Bool) in
            state.isTerminated = true
            state.messages.removeAll()
            defer {
                state.reader = nil
                state.isProducerStopped = false
            }
            return (state.reader, state.isProducerStopped)
        }
        reader?.resume(returning: nil)
        if resume { wantsMore() }
    }

    /// A buffered message (`.some(nil)` once the sequence ended), or `nil` when the consumer must wait, in which case
    /// `reader` (if given) is kept to be resumed by the next delivery. Tells a stopped producer to go on once the
    /// buffer is down to the low watermark.
    private func take(orWaitWith reader: UnsafeContinuation<RedisPubSubMessage?, Never>? = nil) -> RedisPubSubMessage?? {
        let (next, resume) = state.withLock { state -> (RedisPubSubMessage??, Bool) in
            guard let message = state.messages.popFirst() else {
                if state.isFinished || state.isTerminated { return (.some(nil), false) }
                if let reader {
                    precondition(state.reader == nil, "RedisPubSubMessages has one consumer")
                    state.reader = reader
                }
                return (.none, false)
            }
            guard state.isProducerStopped, state.messages.count <= lowWatermark else { return (.some(message), false) }
            state.isProducerStopped = false
            return (.some(message), true)
        }
        if resume { wantsMore() }
        return next
    }
}

/// The event-loop side of ``RedisPubSubMessages``: connection handlers deliver into it, and it tells them whether
/// to keep reading from the socket.
final class RedisPubSubSink {
    private let buffer: RedisPubSubBuffer
    /// Whether the consumer wants more; when not, the current connection stops reading.
    private(set) var wantsMore = true
    /// Resumes reading on the current connection, if it held back a read; set by that connection's handler.
    private(set) var resumeReading: (() -> Void)?
    /// The handler that set ``resumeReading``: a replaced connection's handler, removed after its successor was
    /// added, must not clear its successor's (the subscriber would stop reading for good once it held a read back).
    private var resumeReadingOwner: ObjectIdentifier?

    private init(buffer: RedisPubSubBuffer) {
        self.buffer = buffer
    }

    /// Makes the sequence and its sink; call on `eventLoop`.
    static func make(bufferSize: Int, eventLoop: any EventLoop) -> (RedisPubSubSink, RedisPubSubMessages) {
        let high = max(bufferSize, 1)
        // The buffer reaches the sink weakly: the sink owns the buffer.
        let reference = NIOLoopBound(WeakReference(), eventLoop: eventLoop)
        let buffer = RedisPubSubBuffer(highWatermark: high, lowWatermark: high / 4) {
            eventLoop.execute { reference.value.sink?.consumerWantsMore() }
        }
        let sink = RedisPubSubSink(buffer: buffer)
        reference.value.sink = sink
        return (sink, RedisPubSubMessages(buffer: buffer))
    }

    private final class WeakReference {
        weak var sink: RedisPubSubSink?
    }

    /// Hands a message to the consumer; records whether it wants more.
    func deliver(_ message: RedisPubSubMessage) {
        wantsMore = buffer.deliver(message)
    }

    func consumerWantsMore() {
        guard !wantsMore else { return }
        wantsMore = true
        resumeReading?()
    }

    /// Makes `resume` the way to resume reading, on the connection of `owner` (its handler).
    func setResumeReading(owner: AnyObject, _ resume: @escaping () -> Void) {
        resumeReading = resume
        resumeReadingOwner = ObjectIdentifier(owner)
    }

    /// Forgets how to resume reading, if `owner` (a handler being removed) is the one that set it.
    func clearResumeReading(owner: AnyObject) {
        guard resumeReadingOwner == ObjectIdentifier(owner) else { return }
        resumeReading = nil
        resumeReadingOwner = nil
    }

    /// Ends the sequence after the messages already delivered.
    func finish() {
        resumeReading = nil
        resumeReadingOwner = nil
        buffer.finish()
    }
}
