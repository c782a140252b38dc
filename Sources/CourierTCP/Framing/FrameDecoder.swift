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
package final class FrameDecoder<Parser: FrameParser>: ChannelInboundHandler, RemovableChannelHandler {
    package typealias InboundIn = ByteBuffer
    package typealias InboundOut = ByteBuffer

    private var parser: Parser
    private let incompleteFrameTimeout: TimeAmount?
    private var cumulation: ByteBuffer?
    private var idleTimer: Scheduled<Void>?
    private var failed = false

    package init(parser: Parser, incompleteFrameTimeout: TimeAmount?) {
        self.parser = parser
        self.incompleteFrameTimeout = incompleteFrameTimeout
    }

    package func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let incoming = unwrapInboundIn(data)
        if var existing = cumulation {
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
                guard (decoder.cumulation?.readableBytes ?? 0) > 0 else { return }
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

/// How ``FrameDecoder`` finds frames in the bytes received so far.
package protocol FrameParser: Sendable {
    /// Returns the next complete frame body and moves `buffer`'s reader index past it, or returns `nil` (leaving
    /// the bytes) when more are needed.
    mutating func nextFrame(in buffer: inout ByteBuffer) throws(FrameError) -> ByteBuffer?
}
