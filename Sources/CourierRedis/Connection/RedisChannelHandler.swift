//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// The last handler of a Redis connection: matches replies to commands in order, enforces command timeouts,
/// routes pub/sub pushes, and fails everything pending when the connection ends.
///
/// Pipelining: requests are written as they come; each waits in a FIFO for its reply. Redis answers in order,
/// so the first reply belongs to the oldest request. A caller that gives up (cancellation) fails its promise
/// itself and keeps its place in the FIFO; its reply is discarded when it arrives.
///
/// Timeouts: when a written command's deadline passes, it fails with ``CourierError/Code/timedOut`` and the
/// connection is closed. Its reply may still come, and every later reply would be matched to the wrong command
/// if its slot were dropped; keeping the slot instead would hold every later command hostage to the late one.
/// Closing fails the commands behind it with ``CourierError/Code/transportUnavailable``, and the owner
/// reconnects at once.
final class RedisChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RedisRequest
    typealias OutboundOut = ByteBuffer

    /// An outbound user event that closes the connection, failing what is pending with `reason`.
    struct Close: Sendable {
        var reason: CourierError
    }

    private struct Pending {
        var name: String
        var expectation: RedisRequest.Expectation
        var completion: RedisRequest.Completion
        var deadline: NIODeadline?
        var timeout: Duration?
    }

    private let endpoint: String
    /// Where pub/sub pushes go; `nil` on command connections, where a `["message", …]` array is a normal reply.
    private let pushes: RedisPubSubSink?
    /// Called once, on the event loop, as soon as the connection starts closing or is found closed.
    private let onClose: (CourierError) -> Void

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var closeReason: CourierError?
    private var timeoutTask: Scheduled<Void>?
    private var timeoutDeadline: NIODeadline?
    private var isReadHeldBack = false

    init(endpoint: String, pushes: RedisPubSubSink?, onClose: @escaping (CourierError) -> Void) {
        self.endpoint = endpoint
        self.pushes = pushes
        self.onClose = onClose
    }

    func handlerAdded(context: ChannelHandlerContext) {
        pushes?.setResumeReading(owner: self) { [weak self] in
            guard let self, self.isReadHeldBack else { return }
            self.isReadHeldBack = false
            context.read()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        pushes?.clearResumeReading(owner: self)
        timeoutTask?.cancel()
    }

    // MARK: Outbound

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let closeReason {
            request.completion.fail(closeReason)
            promise?.fail(closeReason)
            return
        }
        let deadline = request.timeout.map { context.eventLoop.now + TimeAmount($0) }
        pending.append(
            Pending(
                name: request.name,
                expectation: request.expectation,
                completion: request.completion,
                deadline: deadline,
                timeout: request.timeout
            )
        )
        if let deadline { armTimeout(at: deadline, context: context) }
        context.write(wrapOutboundOut(request.command), promise: promise)
        if isReadHeldBack {
            // The command's reply must be read even while the consumer is behind (see `read`).
            isReadHeldBack = false
            context.read()
        }
    }

    func read(context: ChannelHandlerContext) {
        // Backpressure for subscribers: hold the read back until the consumer catches up, unless a command waits
        // for its reply (a SUBSCRIBE, or a new connection's handshake): its reply comes after the messages Redis
        // queued before it, which are then buffered past the high watermark rather than left to time it out.
        if let pushes, !pushes.wantsMore, pending.isEmpty {
            isReadHeldBack = true
            return
        }
        context.read()
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if let close = event as? Close {
            self.close(context: context, reason: close.reason)
            promise?.succeed(())
        } else {
            context.triggerUserOutboundEvent(event, promise: promise)
        }
    }

    // MARK: Inbound

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        if let pushes, let message = RedisPubSubMessage(push: value) {
            pushes.deliver(message)
            return
        }
        guard let head = pending.first else {
            close(context: context, reason: protocolViolation("a reply arrived with no command waiting: \(value)"))
            return
        }
        switch head.expectation {
        case .reply:
            complete(pending.removeFirst(), with: value)
        case .confirmations(let kind, let remaining):
            if case .error = value {
                complete(pending.removeFirst(), with: value)
            } else if !value.isConfirmation(of: kind) {
                close(context: context, reason: protocolViolation("expected a '\(kind)' confirmation, got \(value)"))
            } else if remaining > 1 {
                pending[pending.startIndex].expectation = .confirmations(kind: kind, count: remaining - 1)
            } else {
                complete(pending.removeFirst(), with: value)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let detail = (error as? CourierError).map(\.message) ?? "\(error)"
        close(context: context, reason: .unavailable("connection to \(endpoint) closed: \(detail)", underlying: error))
    }

    func channelInactive(context: ChannelHandlerContext) {
        let reason = closeReason ?? .unavailable("connection to \(endpoint) lost")
        if closeReason == nil {
            closeReason = reason
            onClose(reason)
        }
        timeoutTask?.cancel()
        timeoutTask = nil
        while let entry = pending.popFirst() {
            entry.completion.fail(reason)
        }
        context.fireChannelInactive()
    }

    // MARK: Helpers

    private func complete(_ entry: Pending, with value: RESPValue) {
        if case .error(let message) = value {
            entry.completion.fail(RedisError(message: message))
        } else {
            entry.completion.succeed(value)
        }
    }

    private func protocolViolation(_ detail: String) -> CourierError {
        .unavailable("connection to \(endpoint) closed: unexpected reply from Redis: \(detail)")
    }

    private func close(context: ChannelHandlerContext, reason: CourierError) {
        guard closeReason == nil else { return }
        closeReason = reason
        onClose(reason)
        context.close(promise: nil)
    }

    /// Keeps one timer, armed for the earliest deadline known; when it fires, any overdue command closes the
    /// connection, and otherwise it re-arms for the earliest deadline still pending.
    private func armTimeout(at deadline: NIODeadline, context: ChannelHandlerContext) {
        if let timeoutDeadline, timeoutDeadline <= deadline { return }
        timeoutTask?.cancel()
        timeoutDeadline = deadline
        timeoutTask = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timeoutFired(context: context)
        }
    }

    private func timeoutFired(context: ChannelHandlerContext) {
        timeoutTask = nil
        timeoutDeadline = nil
        guard closeReason == nil else { return }
        let now = context.eventLoop.now
        var firstOverdue: Pending?
        var nextDeadline: NIODeadline?
        for entry in pending {
            guard let deadline = entry.deadline else { continue }
            if deadline <= now {
                firstOverdue = firstOverdue ?? entry
            } else {
                nextDeadline = min(nextDeadline ?? deadline, deadline)
            }
        }
        if let firstOverdue {
            // Overdue commands fail with a timeout and leave the queue, so that closing the connection fails only
            // the others: a command's completion runs once (a counted or callback command's more than once would
            // miscount what is unanswered).
            var remaining = CircularBuffer<Pending>(initialCapacity: pending.count)
            while let entry = pending.popFirst() {
                if let deadline = entry.deadline, deadline <= now {
                    entry.completion.fail(
                        CourierError(.timedOut, "Redis command '\(entry.name)' got no reply within \(entry.timeout!)")
                    )
                } else {
                    remaining.append(entry)
                }
            }
            pending = remaining
            let reason = CourierError.unavailable(
                "connection to \(endpoint) closed: command '\(firstOverdue.name)' got no reply within "
                    + "\(firstOverdue.timeout!), so the replies after it could no longer be matched"
            )
            close(context: context, reason: reason)
        } else if let nextDeadline {
            armTimeout(at: nextDeadline, context: context)
        }
    }
}

extension RESPValue {
    /// Whether this is a `[kind, name, count]` (un)subscribe confirmation.
    func isConfirmation(of kind: String) -> Bool {
        guard case .array(let elements?) = self, elements.count == 3, case .bulkString(let first?) = elements[0]
        else { return false }
        return first.readableBytesView.elementsEqual(kind.utf8)
    }
}
