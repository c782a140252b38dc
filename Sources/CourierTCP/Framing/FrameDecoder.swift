//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// Why a TCP byte stream was rejected. The connection is closed after any of these.
public struct FrameError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What was wrong, for logs.
    public var reason: String
    public var description: String { reason }
}

/// Cuts one kind of frame out of a TCP byte stream (the ``FrameParser`` decides which), and guards the connection:
/// a malformed or oversized frame, or one left half-sent for longer than `incompleteFrameTimeout`, fires a
/// ``FrameError`` down the pipeline and closes the connection.
///
/// The incomplete-frame timeout never ends a connection while a handler after this one withholds reads (it says so
/// with ``ReadsWithheld``): the rest of the frame then waits in the kernel through no fault of the peer. A timer
/// that falls due meanwhile is armed again, for a full timeout, when reading resumes.
package final class FrameDecoder<Parser: FrameParser>: ChannelDuplexHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer
    package typealias OutboundIn = Never

    private var parser: Parser
    private let incompleteFrameTimeout: TimeAmount?
    private var cumulation: ByteBuffer?
    private var idleTimer: Scheduled<Void>?
    private var failed = false
    /// False from a ``ReadsWithheld`` until the next read passes by.
    private var reading = true

    package init(parser: Parser, incompleteFrameTimeout: TimeAmount?) {
        self.parser = parser
        self.incompleteFrameTimeout = incompleteFrameTimeout
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let incoming = unwrapInboundIn(data)
        if var existing = cumulation {
            // Taken out first, so that the append finds its storage uniquely held and writes in place (a second
            // reference made every read copy everything gathered so far: quadratic in a frame's reads).
            cumulation = nil
            var incoming = incoming
            existing.writeBuffer(&incoming)
            cumulation = existing
        } else {
            cumulation = incoming
        }
        var completedFrame = false
        do {
            while let body = try nextFrame() {
                completedFrame = true
                context.fireChannelRead(wrapInboundOut(body))
                if failed { return }
            }
        } catch {
            fail(context: context, error)
            return
        }
        if let buffer = cumulation, buffer.readableBytes == 0 {
            cumulation = nil
        } else if var buffer = cumulation, buffer.readerIndex > 64 * 1024, buffer.readerIndex > buffer.readableBytes {
            // Reclaim consumed space without copying on every frame.
            // Frame progress is relative to the reader index, so it survives the move.
            buffer.discardReadBytes()
            cumulation = buffer
        }
        if completedFrame, let timer = idleTimer {
            // The timeout is per frame: a frame that started in this read gets its own full timeout.
            timer.cancel()
            idleTimer = nil
        }
        updateIdleTimer(context: context)
    }

    package func read(context: ChannelHandlerContext) {
        reading = true
        updateIdleTimer(context: context)
        context.read()
    }

    package func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard event is ReadsWithheld else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        reading = false
        promise?.succeed(())
    }

    package func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
        context.fireChannelInactive()
    }

    package func handlerRemoved(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        idleTimer = nil
    }

    /// Returns the next complete frame body from the cumulation, or `nil` when more bytes are needed.
    private func nextFrame() throws(FrameError) -> ByteBuffer? {
        guard var buffer = cumulation, buffer.readableBytes > 0 else { return nil }
        defer { cumulation = buffer }
        return try parser.nextFrame(in: &buffer)
    }

    private func updateIdleTimer(context: ChannelHandlerContext) {
        guard let timeout = incompleteFrameTimeout else { return }
        let partial = (cumulation?.readableBytes ?? 0) > 0
        if partial, idleTimer == nil {
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            idleTimer = context.eventLoop.scheduleTask(in: timeout) {
                let (decoder, context) = bound.value
                decoder.idleTimer = nil
                // Reads withheld: not the peer's fault; the next read arms the timer again.
                guard (decoder.cumulation?.readableBytes ?? 0) > 0, decoder.reading else { return }
                decoder.fail(context: context, FrameError(reason: "a frame was left incomplete for \(timeout)"))
            }
        } else if !partial, let timer = idleTimer {
            timer.cancel()
            idleTimer = nil
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: FrameError) {
        guard !failed else { return }
        failed = true
        cumulation = nil
        idleTimer?.cancel()
        idleTimer = nil
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }
}

/// Tells a ``FrameDecoder`` before it in the pipeline that a read was withheld (an outbound user event): until the
/// next read, a frame left incomplete is not the peer's fault.
package struct ReadsWithheld: Sendable {
    package init() {}
}

/// How ``FrameDecoder`` finds frames in the bytes received so far.
package protocol FrameParser: Sendable {
    /// Returns the next complete frame body and moves `buffer`'s reader index past it, or returns `nil` (leaving
    /// the bytes) when more are needed.
    mutating func nextFrame(in buffer: inout ByteBuffer) throws(FrameError) -> ByteBuffer?
}
