//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization

/// Publishes the replies to one request, for the pub/sub and the Streams workers alike.
///
/// A stream's elements are pipelined: one connection keeps them in order, and a handler's element waits for Redis's
/// answer only while ``elementWindow`` of its stream's elements are unanswered, which still paces a fast producer. If
/// an element's `PUBLISH` fails, the stream has a gap: the handler's next write throws that error instead of going on.
final class RedisReplyPublisher: ReplyWriter {
    /// Where replies go, and in which format.
    enum Destination: Sendable {
        /// A pub/sub request's reply channel (derived from the request's channel), in the worker's format. The final
        /// reply is queued without waiting: pub/sub delivers at most once, nothing follows it, and not waiting
        /// spares a suspension per request.
        case pubSub(format: RedisWireFormat, requestChannel: String)
        /// The channel a Streams caller named, in NestJS's format. The final reply is awaited: the entry is
        /// acknowledged only once its caller's reply was accepted.
        case caller(channel: String)
    }

    /// How many of a stream's elements may be unanswered before the next one waits for its own answer.
    static let elementWindow = 256

    private let connection: RedisConnection
    private let destination: Destination
    /// Elements published and not answered yet.
    private let unanswered = Atomic<Int>(0)
    /// The first element whose `PUBLISH` failed.
    private let failure = Mutex<(any Error)?>(nil)

    /// Counts the pub/sub final replies sent without waiting, and reports those that fail.
    private let finalReplies: RedisUnansweredCommands?

    /// - Parameter finalReplies: Where a pub/sub worker counts its final replies (one per worker); without it they
    ///   are sent with a promise each, whose failure is not reported.
    init(connection: RedisConnection, destination: Destination, finalReplies: RedisUnansweredCommands? = nil) {
        self.connection = connection
        self.destination = destination
        self.finalReplies = finalReplies
    }

    func write(_ reply: WireReply) async throws {
        try throwIfAnElementFailed()
        let channel: String
        let message: ByteBuffer
        switch destination {
        case .pubSub(let format, let requestChannel):
            channel = format.replyChannel(for: reply, requestChannel: requestChannel)
            message = format.encode(reply)
        case .caller(let callerChannel):
            channel = callerChannel
            var buffer = ByteBufferAllocator().buffer(capacity: 64 + (reply.response?.readableBytes ?? 0))
            NestJSEnvelope.encode(reply, into: &buffer)
            message = buffer
        }
        let command: [RESPArgument] = ["PUBLISH", RESPArgument(channel), RESPArgument(message)]
        if reply.isDisposed, case .pubSub = destination, let finalReplies {
            // Counted rather than promised: no promise, future and callback per request.
            connection.enqueue(command, countedIn: finalReplies)
            return
        }
        let answer = connection.enqueue(command)
        if reply.isDisposed {
            guard case .caller = destination else { return }
            _ = try await answer.get()
            // Answers come in order: every element's answer has been seen by now.
            try throwIfAnElementFailed()
            return
        }
        let waits = unanswered.wrappingAdd(1, ordering: .relaxed).newValue > Self.elementWindow
        answer.whenComplete { result in
            self.unanswered.wrappingSubtract(1, ordering: .relaxed)
            if case .failure(let error) = result {
                self.failure.withLock { first in if first == nil { first = error } }
            }
        }
        if waits { _ = try await answer.get() }
    }

    private func throwIfAnElementFailed() throws {
        if let failure = failure.withLock({ $0 }) { throw failure }
    }
}
