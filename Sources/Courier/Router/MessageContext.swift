//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import Synchronization

/// What a handler knows about the message it is handling, and what it can do beyond returning a reply.
public struct MessageContext: Sendable {
    /// The context's values, in one object: a context is copied into every async frame of a handler's call chain,
    /// and while the handler waits those frames hold a reference instead of about 300 bytes each (a worker holding
    /// 10,000 calls keeps 10,000 call chains).
    private final class Storage: Sendable {
        let pattern: String
        let route: String
        let correlationID: String?
        let headers: [String: String]
        let transport: TransportMetadata
        let client: CourierClient?
        let baseLogger: Logger
        /// Whether the caller announced a deadline, and then the deadline (a handler can extend it). Held here
        /// rather than in an object of its own: one allocation per request fewer.
        let hasDeadline: Bool
        let deadline: Mutex<NIODeadline>
        let replies: ReplyEmitter?
        /// Whether the handler has returned or thrown: its final reply is sent, and the call is over.
        let hasEnded = Atomic<Bool>(false)

        init(pattern: String, route: String, correlationID: String?, headers: [String: String],
             transport: TransportMetadata, client: CourierClient?, baseLogger: Logger,
             deadline: NIODeadline?, replies: ReplyEmitter?) {
            self.pattern = pattern
            self.route = route
            self.correlationID = correlationID
            self.headers = headers
            self.transport = transport
            self.client = client
            self.baseLogger = baseLogger
            self.hasDeadline = deadline != nil
            self.deadline = Mutex(deadline ?? .distantFuture)
            self.replies = replies
        }
    }

    private let storage: Storage

    init(pattern: String, route: String, correlationID: String?, headers: [String: String],
         transport: TransportMetadata, client: CourierClient?, baseLogger: Logger,
         deadline: NIODeadline?, replies: ReplyEmitter?) {
        storage = Storage(pattern: pattern, route: route, correlationID: correlationID, headers: headers,
                          transport: transport, client: client, baseLogger: baseLogger,
                          deadline: deadline, replies: replies)
    }

    /// The concrete pattern the message was sent to.
    public var pattern: String { storage.pattern }
    /// The registered route that matched it (differs from ``pattern`` for wildcard routes).
    public var route: String { storage.route }
    /// The request's correlation id; `nil` for an event.
    public var correlationID: String? { storage.correlationID }
    /// String metadata sent with the message.
    public var headers: [String: String] { storage.headers }
    /// What the transport knows about the message's origin (remote address, partition, offset, channel, …).
    public var transport: TransportMetadata { storage.transport }
    /// A client for onward calls, if the microservice was given one. Calls made from an `async` handler (and from
    /// the tasks it starts) never wait past this handler's own deadline. A synchronous handler cannot await a
    /// call; a task it starts outlives its request and gets no deadline from it.
    public var client: CourierClient? { storage.client }
    /// A logger with the pattern and correlation id attached.
    public var logger: Logger {
        // Built on use: attaching metadata costs more than most handlers, and most never log.
        var logger = baseLogger
        logger[metadataKey: "pattern"] = "\(pattern)"
        if let correlationID { logger[metadataKey: "correlation-id"] = "\(correlationID)" }
        return logger
    }

    var baseLogger: Logger { storage.baseLogger }
    /// The caller's deadline as it stands now (a handler may have extended it); `nil` when it announced none.
    var deadline: NIODeadline? { storage.hasDeadline ? storage.deadline.withLock { $0 } : nil }
    var replies: ReplyEmitter? { storage.replies }

    /// Whether the handler has finished (its final reply is sent or being sent).
    var hasEnded: Bool { storage.hasEnded.load(ordering: .acquiring) }

    /// Marks the handler as finished, before its final reply is written.
    func end() { storage.hasEnded.store(true, ordering: .releasing) }

    /// Whether the message is an event (no reply is ever sent).
    public var isEvent: Bool { correlationID == nil }

    /// The time left before the caller gives up, or `nil` when the caller announced no deadline (an event, or a
    /// caller that is not Courier, such as a NestJS client).
    public var remainingTime: Duration? {
        deadline.map { deadline in
            let left = deadline - .now()
            return .nanoseconds(max(0, left.nanoseconds))
        }
    }

    /// Asks the caller to wait longer: its deadline becomes now + `duration` (if that is later).
    ///
    /// Use it from long-running handlers, as Ascender's `defer_response`. It is a no-op for events and for
    /// callers that announced no deadline (NestJS callers have none, and would not understand the packet).
    ///
    /// - Throws: ``CourierError`` when the extension cannot be sent (the caller's connection is gone), and
    ///   ``CourierError/Code/timedOut`` once the caller's deadline has passed (it no longer waits).
    public func extendDeadline(by duration: Duration) async throws {
        guard storage.hasDeadline, let replies else { return }
        // Once the deadline has passed the caller has stopped waiting: an extension cannot bring it back.
        let passed = storage.deadline.withLock { deadline -> Bool in
            let now = NIODeadline.now()
            guard deadline >= now else { return true }
            deadline = max(deadline, now + .nanoseconds(duration.nanosecondCount))
            return false
        }
        if passed { throw CourierError(.timedOut, "the caller's deadline passed; it no longer listens") }
        try await replies.write(WireReply(correlationID: replies.correlationID, extendDeadline: duration))
    }
}

/// Writes the reply packets of one request.
struct ReplyEmitter: Sendable {
    let correlationID: String
    let writer: any ReplyWriter

    func write(_ reply: WireReply) async throws {
        do {
            try await writer.write(reply)
        } catch let error as CourierError {
            throw error
        } catch {
            throw CourierError.unavailable("could not send a reply: \(error)", underlying: error)
        }
    }
}

/// Sends the elements of a streamed reply. Each ``send(_:)`` returns once the element is handed to the network,
/// so a fast producer is paced by the connection.
public struct StreamWriter<Element: Encodable & Sendable>: Sendable {
    /// The handler's context: its replies, and the caller's deadline as it stands (the handler may extend it).
    let context: MessageContext
    let coder: PayloadCoder

    /// Sends one element to the caller.
    ///
    /// - Throws: ``CourierError`` if the element cannot be encoded or the caller is unreachable, and
    ///   ``CourierError/Code/timedOut`` once the caller's deadline has passed (it stopped listening, so the
    ///   handler should stop producing). Once the handler has returned or thrown, the stream has ended and every
    ///   `send` throws.
    public func send(_ element: Element) async throws {
        guard let replies = context.replies else { return }
        if context.hasEnded {
            throw CourierError(.unprocessable, "the stream of '\(context.pattern)' has ended: its handler returned")
        }
        if let deadline = context.deadline, deadline < .now() {
            throw CourierError(.timedOut, "the caller's deadline passed; it no longer listens")
        }
        let payload = try coder.encode(element)
        try await replies.write(WireReply(correlationID: replies.correlationID, response: payload))
    }

    /// Sends every element of `sequence`, in order.
    public func send<S: AsyncSequence>(contentsOf sequence: S) async throws where S.Element == Element {
        for try await element in sequence { try await send(element) }
    }
}

/// The deadline of the handler running in the current task, for onward calls.
enum CallDeadline {
    /// The context of the handler running in the current task. The context, not its deadline, is bound, so that
    /// onward calls follow ``MessageContext/extendDeadline(by:)``.
    @TaskLocal static var context: MessageContext?

    /// The deadline as it stands now; `nil` outside a handler or for a caller that announced none.
    static var current: NIODeadline? { context?.deadline }
}
