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
        /// spares a suspension per request. It is counted in `finalReplies` (one per worker), which reports those
        /// whose `PUBLISH` fails.
        case pubSub(format: RedisWireFormat, requestChannel: String, finalReplies: RedisUnansweredCommands)
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

    init(connection: RedisConnection, destination: Destination) {
        self.connection = connection
        self.destination = destination
    }

    func writeFinalWithoutWaiting(_ reply: WireReply) throws -> Bool {
        guard reply.isDisposed, case .pubSub(let format, let requestChannel, let finalReplies) = destination else {
            return false
        }
        try throwIfAnElementFailed()
        let command: [RESPArgument] = [
            "PUBLISH", RESPArgument(format.replyChannel(for: reply, requestChannel: requestChannel)),
            RESPArgument(format.encode(reply)),
        ]
        // Counted rather than promised: no promise, future and callback per request.
        connection.enqueue(command, countedIn: finalReplies)
        return true
    }

    func write(_ reply: WireReply) async throws {
        if try writeFinalWithoutWaiting(reply) { return }
        try throwIfAnElementFailed()
        let channel: String
        let message: ByteBuffer
        switch destination {
        case .pubSub(let format, let requestChannel, _):
            channel = format.replyChannel(for: reply, requestChannel: requestChannel)
            message = format.encode(reply)
        case .caller(let callerChannel):
            channel = callerChannel
            var buffer = ByteBufferAllocator().buffer(capacity: NestJSEnvelope.capacity(for: reply))
            NestJSEnvelope.encode(reply, into: &buffer)
            message = buffer
        }
        let command: [RESPArgument] = ["PUBLISH", RESPArgument(channel), RESPArgument(message)]
        if reply.isDisposed {
            // A Streams caller's final reply (a pub/sub one went out above): awaited.
            _ = try await connection.enqueue(command).get()
            // Answers come in order: every element's answer has been seen by now.
            try throwIfAnElementFailed()
            return
        }
        guard unanswered.wrappingAdd(1, ordering: .relaxed).newValue > Self.elementWindow else {
            // The usual element: a callback on the connection's event loop, no promise.
            connection.enqueue(command) { self.elementAnswered($0) }
            return
        }
        let answer = connection.enqueue(command)
        answer.whenComplete { self.elementAnswered($0) }
        _ = try await answer.get()
    }

    /// Counts an element's answer, and keeps the first failure for the handler's next write.
    private func elementAnswered(_ result: Result<RESPValue, any Error>) {
        unanswered.wrappingSubtract(1, ordering: .relaxed)
        if case .failure(let error) = result {
            failure.withLock { first in if first == nil { first = error } }
        }
    }

    private func throwIfAnElementFailed() throws {
        if let failure = failure.withLock({ $0 }) { throw failure }
    }
}
