//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// The caller's half of a transport: it carries requests and events out and replies back.
///
/// Implementations must be safe to call from many tasks at once. ``send(_:)`` must not block or suspend: it hands
/// the request to the transport's own machinery (an event loop, a producer queue) and reports a failure to deliver
/// through the ``ReplyReceiver`` given to ``connect(replies:)``, which also receives every reply.
public protocol ClientTransport: Sendable {
    /// The transport's name in logs and metadata, such as `tcp`.
    var name: String { get }

    /// Makes the transport ready to send, connecting if it is not connected. Cheap when already connected.
    ///
    /// - Parameter replies: Where replies and delivery failures go; the same receiver on every call.
    /// - Throws: ``CourierError`` with ``CourierError/Code/transportUnavailable`` when the peer cannot be reached.
    func connect(replies: any ReplyReceiver) async throws

    /// Whether the transport is connected now, so that ``connect(replies:)`` returns at once. Otherwise a caller
    /// bounds its wait for the connection by the call's deadline (and its cancellation), which costs two tasks per
    /// call; a transport that cannot tell may keep the default, `false`.
    var isConnected: Bool { get }

    /// Starts sending a request. Must not suspend or block; a failure is reported to the receiver.
    func send(_ request: WireRequest)

    /// Sends an event and returns once the transport has accepted it (written, or acknowledged where the
    /// transport has acknowledgements).
    func emit(_ event: WireRequest) async throws

    /// Sends several events in order and returns once the transport has accepted them all, as ``emit(_:)`` does for
    /// one. Transports override it to hand the whole batch over at once (one write, one pipeline, one produce loop)
    /// instead of waiting for each event in turn.
    ///
    /// An event the transport refuses up front (too large for a TCP frame) fails the batch before any is sent.
    /// Otherwise the error of the first event that failed is thrown; events before it may have been accepted, and on
    /// a transport that stops at the failure (the default, TCP), those after it were not sent. A transport that
    /// learns every event's outcome (Redis's pipelined answers, Kafka's delivery reports) waits for them all and throws
    /// ``CourierError/batch(_:count:failures:firstUnsent:)``, which names every failed event.
    func emit(batch events: [WireRequest]) async throws

    /// The caller no longer waits for replies to this id (timeout, cancellation, end of stream).
    func release(correlationID: String)

    /// The native client object for advanced use (for TCP, the NIO `Channel`), connecting first if needed.
    func nativeClient(replies: any ReplyReceiver) async throws -> any Sendable

    /// Closes connections. Pending calls are failed by the caller.
    func close() async
}

extension ClientTransport {
    public var isConnected: Bool { false }

    public func release(correlationID: String) {}

    /// Emits the events one after another, each waiting for ``emit(_:)``.
    public func emit(batch events: [WireRequest]) async throws {
        for event in events { try await emit(event) }
    }
}
