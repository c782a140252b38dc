//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization

/// The frames one server connection has received, waiting for the connection's reader task, with backpressure:
/// past ``highWatermark`` frames the connection stops reading from its socket until the reader is down to
/// ``lowWatermark``.
///
/// It replaces `NIOAsyncChannel`'s inbound sequence, whose generic code is not specialised outside NIOCore:
/// measured on a worker answering calls one at a time, its `yield` took 14 % of the worker's CPU, most of it looking
/// up generic metadata.
final class InboundFrameQueue: Sendable {
    /// What the reader gets next.
    enum Next: Sendable {
        case frame(ByteBuffer)
        /// A frame the queue's immediate handling decoded and did not handle.
        case packet(WirePacket)
        /// The frame decoder rejected the stream (the connection is closing).
        case malformed(FrameError)
        /// The connection closed, failed, or the reader was cancelled.
        case end
    }

    /// Frames buffered before the connection stops reading.
    static let highWatermark = 64
    /// Frames buffered at or below which a connection that stopped reading reads again.
    static let lowWatermark = 16

    /// What immediate handling did with a frame (see ``install(on:handleNow:)``).
    enum Immediate: Sendable {
        /// Handled: nothing is left for the reader.
        case handled
        /// Decoded and not handled: the reader gets the packet rather than decoding the frame again.
        case decoded(WirePacket)
        /// Not handled (for example malformed): the reader gets the frame.
        case declined
    }

    private struct State {
        var frames = CircularBuffer<Next>(initialCapacity: 16)
        var reader: UnsafeContinuation<Next, Never>?
        /// How the queue ends once its frames are read.
        var ending: Next?
        /// A read the channel asked for and the handler withheld because the queue was full.
        var readWithheld = false
    }

    private let state = Mutex(State())
    /// Asks the channel for more bytes (on its event loop) after a withheld read.
    private let resumeReading: @Sendable () -> Void
    private let handleNow: (@Sendable (ByteBuffer) -> Immediate)?

    private init(resumeReading: @escaping @Sendable () -> Void, handleNow: (@Sendable (ByteBuffer) -> Immediate)?) {
        self.resumeReading = resumeReading
        self.handleNow = handleNow
    }

    /// Adds a queue and its handler to a new connection's pipeline, after its frame decoder.
    ///
    /// With `handleNow`, a frame that arrives while the reader waits with nothing queued goes to `handleNow` first,
    /// on the event loop: what it handles never reaches the reader, which spares waking the reader per frame. Frames
    /// that arrive while the reader has earlier ones in hand are queued, so that they are taken in arrival order.
    static func install(
        on channel: any Channel,
        handleNow: (@Sendable (ByteBuffer) -> Immediate)? = nil
    ) throws -> InboundFrameQueue {
        let handler = Handler()
        let bound = NIOLoopBound(handler, eventLoop: channel.eventLoop)
        let eventLoop = channel.eventLoop
        let queue = InboundFrameQueue(
            resumeReading: {
                if eventLoop.inEventLoop {
                    bound.value.resumeReading()
                } else {
                    eventLoop.execute { bound.value.resumeReading() }
                }
            },
            handleNow: handleNow
        )
        handler.queue = queue
        try channel.pipeline.syncOperations.addHandler(handler)
        return queue
    }

    /// The next frame, or how the connection ended; waits for one. One reader at a time; cancelling it ends the
    /// queue for it.
    func next() async -> Next {
        if let ready = take() { return ready }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let ready = state.withLock { state -> Next? in
                    if let ready = Self.take(from: &state) { return ready }
                    precondition(state.reader == nil, "InboundFrameQueue has one reader")
                    state.reader = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            end(with: .end)
        }
    }

    // MARK: Internals

    private func take() -> Next? {
        let (next, resume) = state.withLock { state -> (Next?, Bool) in
            let next = Self.take(from: &state)
            guard state.readWithheld, state.frames.count <= Self.lowWatermark else { return (next, false) }
            state.readWithheld = false
            return (next, true)
        }
        if resume { resumeReading() }
        return next
    }

    private static func take(from state: inout State) -> Next? {
        if let next = state.frames.popFirst() { return next }
        return state.ending
    }

    /// Hands a frame (on the event loop) to immediate handling while the reader waits idle, else straight to a
    /// waiting reader, else to the queue.
    fileprivate func push(_ frame: ByteBuffer) {
        var next = Next.frame(frame)
        // A waiting reader has nothing queued and no frame in hand: this frame is the next in arrival order.
        if let handleNow, state.withLock({ $0.reader != nil && $0.ending == nil }) {
            switch handleNow(frame) {
            case .handled: return
            case .decoded(let packet): next = .packet(packet)
            case .declined: break
            }
        }
        let reader = state.withLock { state -> UnsafeContinuation<Next, Never>? in
            guard state.ending == nil else { return nil }
            if let reader = state.reader {
                state.reader = nil
                return reader
            }
            state.frames.append(next)
            return nil
        }
        reader?.resume(returning: next)
    }

    /// Whether a read the channel asks for must wait for the reader; records it if so.
    fileprivate func withholdsRead() -> Bool {
        state.withLock { state in
            guard state.frames.count >= Self.highWatermark, state.ending == nil else { return false }
            state.readWithheld = true
            return true
        }
    }

    /// Ends the queue: the reader gets the buffered frames, then `ending`. The first ending wins.
    fileprivate func end(with ending: Next) {
        let reader = state.withLock { state -> UnsafeContinuation<Next, Never>? in
            guard state.ending == nil else { return nil }
            state.ending = ending
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume(returning: ending)
    }

    /// Feeds the queue from the pipeline and withholds reads while it is full.
    final class Handler: ChannelDuplexHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundIn = ByteBuffer

        fileprivate var queue: InboundFrameQueue?
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) {
            self.context = context
        }

        func handlerRemoved(context: ChannelHandlerContext) {
            self.context = nil
            queue?.end(with: .end)
            // The queue's read-resuming closure holds this handler: let go of the queue to break the cycle.
            queue = nil
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            queue?.push(unwrapInboundIn(data))
        }

        func read(context: ChannelHandlerContext) {
            if queue?.withholdsRead() == true {
                // The frame decoder must not blame the peer for a frame left incomplete meanwhile.
                context.triggerUserOutboundEvent(ReadsWithheld(), promise: nil)
                return
            }
            context.read()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // The frame decoder closes the connection after a malformed frame; any other error closes it here.
            if let error = error as? FrameError {
                queue?.end(with: .malformed(error))
            } else {
                queue?.end(with: .end)
                context.close(promise: nil)
            }
        }

        func channelInactive(context: ChannelHandlerContext) {
            queue?.end(with: .end)
            context.fireChannelInactive()
        }

        fileprivate func resumeReading() {
            context?.read()
        }
    }
}
