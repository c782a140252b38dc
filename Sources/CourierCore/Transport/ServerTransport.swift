//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The worker's half of a transport: it receives requests and events and carries replies back.
public protocol ServerTransport: Sendable {
    /// The transport's name in logs and metadata, such as `tcp`.
    var name: String { get }

    /// Receives messages for `patterns` and hands each to `dispatcher`, until the calling task is cancelled.
    ///
    /// Call ``InboundDispatcher/dispatch(_:in:)`` for every message from a task group the transport owns, so that
    /// handlers run as its child tasks. Once ``InboundDispatcher/draining()`` returns, stop taking new work (close
    /// listeners); the dispatcher already holds back messages that arrive after that. When the task is cancelled,
    /// close everything and return.
    func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws

    /// The native server object for advanced use (for TCP, the listening NIO `Channel`), once serving.
    func nativeServer() async throws -> any Sendable
}

/// Where a server transport sends the replies to one request.
public protocol ReplyWriter: Sendable {
    /// Writes one reply packet; returns once it is handed to the network.
    func write(_ reply: WireReply) async throws

    /// Writes a final reply (one with `isDisposed`) if this writer can without suspending, and returns whether it
    /// did; when it returns `false`, nothing was written and the caller uses ``write(_:)``.
    ///
    /// Synchronous handlers reply through it, which leaves their whole path without a suspension point. The default
    /// returns `false`.
    func writeFinalWithoutWaiting(_ reply: WireReply) throws -> Bool
}

extension ReplyWriter {
    /// Writes nothing and returns `false`: replies go through ``write(_:)``.
    public func writeFinalWithoutWaiting(_ reply: WireReply) throws -> Bool { false }
}

/// What a transport knows about where a message came from, for handlers that care.
public struct TransportMetadata: Sendable {
    /// The transport's name (`tcp`, `kafka`, `redis`, `memory`).
    public var transport: String
    /// The peer's address, where the transport has one (TCP).
    public var remoteAddress: String?
    /// The channel, stream or topic the message arrived on (Redis, Kafka).
    public var channel: String?
    /// The partition of a Kafka record.
    public var partition: Int?
    /// The offset of a Kafka record or the entry id of a Redis Streams entry, as text.
    public var offset: String?
    /// The record key (Kafka), as raw bytes.
    public var key: [UInt8]?
    /// The broker timestamp of the message, in milliseconds since 1970, where the transport has one.
    public var timestampMilliseconds: Int64?

    /// Metadata for a message; only `transport` is required.
    public init(
        transport: String,
        remoteAddress: String? = nil,
        channel: String? = nil,
        partition: Int? = nil,
        offset: String? = nil,
        key: [UInt8]? = nil,
        timestampMilliseconds: Int64? = nil
    ) {
        self.transport = transport
        self.remoteAddress = remoteAddress
        self.channel = channel
        self.partition = partition
        self.offset = offset
        self.key = key
        self.timestampMilliseconds = timestampMilliseconds
    }
}

/// A message a server transport received, with where to send replies.
public struct InboundMessage: Sendable {
    /// The decoded request or event.
    public var request: WireRequest
    /// Transport details about its origin.
    public var metadata: TransportMetadata
    /// Where replies go; `nil` for events.
    public var replyWriter: (any ReplyWriter)?
    /// Called exactly once when the worker is done with the message, with how it went.
    ///
    /// "Done" means the handler returned or threw and every reply was handed to the ``replyWriter``, or the message
    /// was refused. Transports with acknowledgements use it: Kafka stores the record's offset, Redis Streams sends
    /// `XACK`, and per-partition ordering waits for it before dispatching the next record.
    public var onHandled: (@Sendable (HandlingOutcome) -> Void)?

    /// A received message.
    public init(
        request: WireRequest,
        metadata: TransportMetadata,
        replyWriter: (any ReplyWriter)?,
        onHandled: (@Sendable (HandlingOutcome) -> Void)? = nil
    ) {
        self.request = request
        self.metadata = metadata
        self.replyWriter = replyWriter
        self.onHandled = onHandled
    }
}

/// How the worker finished with one message, for transports that acknowledge.
public struct HandlingOutcome: Sendable, CustomStringConvertible {
    enum Kind: Sendable, Hashable {
        case succeeded, failed, unhandled, abandoned
    }

    let kind: Kind
    /// The error the handler threw, for ``failed``.
    public let error: (any Error)?

    /// The handler finished and its replies were handed to the transport.
    public static let succeeded = HandlingOutcome(kind: .succeeded, error: nil)
    /// The handler threw (or the payload could not be decoded); an error reply was sent for a request.
    public static func failed(_ error: any Error) -> HandlingOutcome { HandlingOutcome(kind: .failed, error: error) }
    /// No handler matches the pattern; a request got NestJS's "no matching message handler" reply.
    public static let unhandled = HandlingOutcome(kind: .unhandled, error: nil)
    /// The worker did not finish the message (it was stopping, the handler was cancelled, or the reply could not
    /// be handed over): do not acknowledge it, so that a transport with redelivery delivers it again.
    public static let abandoned = HandlingOutcome(kind: .abandoned, error: nil)

    /// Whether the message should be acknowledged (everything but ``abandoned``).
    public var shouldAcknowledge: Bool { kind != .abandoned }
    /// Whether the handler ran to completion without throwing.
    public var isSuccess: Bool { kind == .succeeded }
    /// Whether no handler matched.
    public var isUnhandled: Bool { kind == .unhandled }
    /// Whether the handler threw (see ``error``).
    public var isFailure: Bool { kind == .failed }

    public var description: String {
        switch kind {
        case .succeeded: "succeeded"
        case .failed: "failed(\(error.map { "\($0)" } ?? "?"))"
        case .unhandled: "unhandled"
        case .abandoned: "abandoned"
        }
    }
}

/// Runs handlers for the messages a server transport receives. Implemented by `Microservice`.
public protocol InboundDispatcher: Sendable {
    /// Waits for a free handler slot (this is the backpressure a transport feels), then starts handling `message`
    /// as a child task of `group`. While the service drains, it waits until cancelled instead: the message is
    /// neither handled nor acknowledged.
    func dispatch(_ message: InboundMessage, in group: inout DiscardingTaskGroup) async

    /// ``dispatch(_:in:)``, for a transport that knows where its reader runs. With `startImmediately`, the handler's
    /// task starts on the calling thread and runs there up to its first suspension, and the caller goes on after
    /// that: for a reader that runs on the executor its handlers prefer (an event loop, through a task executor),
    /// this spares enqueueing each handler on that executor. Without it, the handler is enqueued, so that it can
    /// run in parallel with the reader.
    func dispatch(_ message: InboundMessage, in group: inout DiscardingTaskGroup, startImmediately: Bool) async

    /// Handles `message` in the calling task and returns its outcome, for transports that handle messages one at a
    /// time in order (a Kafka partition): it spares a task and a hand-off per message. It takes a handler slot as
    /// ``dispatch(_:in:)`` does; while the service drains, it waits until cancelled and returns
    /// ``HandlingOutcome/abandoned``. `message.onHandled` is not called.
    func handleInPlace(_ message: InboundMessage) async -> HandlingOutcome

    /// Handles `message` now, on the calling thread and without suspending, if its handler is synchronous, a handler
    /// slot is free at once and the service is not draining; returns whether it did. When it returns `false`,
    /// nothing happened: dispatch the message as usual.
    ///
    /// For a transport that reads on an event loop: a message it hands over here spares waking its reader task. Call
    /// it only while the reader has no earlier message in hand, so that handlers still start in arrival order.
    func handleNowIfSynchronous(_ message: InboundMessage) -> Bool

    /// Returns once the service has begun its graceful shutdown (stop taking new work).
    func draining() async

    /// Once the graceful shutdown has begun, when it stops waiting for in-flight work (its start plus the service's
    /// graceful shutdown timeout); `nil` before. A transport that closes connections as it stops may wait until then
    /// for the replies of handlers that finished to be written, instead of dropping what is still queued.
    var shutdownDeadline: NIODeadline? { get }

    /// How many handlers could start now without waiting, or `nil` if the dispatcher cannot tell. A transport that
    /// takes messages in batches (Redis Streams) takes no more than this, so that none waits long in the worker
    /// for a slot (another worker would claim it as idle).
    var availableHandlerSlots: Int? { get }

    /// Logs a problem with input the transport received (a malformed frame, an oversized message).
    func reportBadInput(_ reason: String, metadata: TransportMetadata)
}

extension InboundDispatcher {
    /// `nil`: unknown.
    public var availableHandlerSlots: Int? { nil }

    /// `nil`: no deadline is known, so nothing is waited for.
    public var shutdownDeadline: NIODeadline? { nil }

    /// Returns `false`: every message goes through ``dispatch(_:in:)``.
    public func handleNowIfSynchronous(_ message: InboundMessage) -> Bool { false }

    /// Through ``dispatch(_:in:)``, for dispatchers that always enqueue.
    public func dispatch(_ message: InboundMessage, in group: inout DiscardingTaskGroup, startImmediately: Bool) async {
        await dispatch(message, in: &group)
    }

    /// Through ``dispatch(_:in:)``, for dispatchers that do not handle in place.
    public func handleInPlace(_ message: InboundMessage) async -> HandlingOutcome {
        let outcome = OneShot<HandlingOutcome>()
        var forwarded = message
        forwarded.onHandled = { outcome.deliver($0) }
        let dispatched = forwarded
        await withDiscardingTaskGroup { group in
            await dispatch(dispatched, in: &group)
        }
        return await outcome.value
    }
}
