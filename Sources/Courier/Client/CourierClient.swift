//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Logging
import NIOCore

/// Calls services: request/reply (``send(_:_:timeout:headers:)``), events (``emit(_:_:headers:)``, several at once
/// with ``emitBatch(_:_:headers:)``), streamed replies (``sendStream(_:_:timeout:headers:)``), and raw access to the
/// native client (``unwrap(as:)``).
///
/// A client connects lazily on its first call and reconnects on the next call after a connection is lost. Every
/// call has a deadline: the per-call `timeout`, else ``ClientConfiguration/defaultTimeout``, and never later than
/// the deadline of the handler making the call. Cancelling the calling task ends a `send` with
/// ``CourierError/Code/cancelled``; a streamed call ends when its consumer stops iterating or its task is cancelled
/// (iteration then simply ends, as for any `AsyncThrowingStream`). Replies arriving after a call ended are dropped.
///
/// It is safe to use from many tasks at once; calls are multiplexed over the transport.
public final class CourierClient: Sendable {
    private let transport: any ClientTransport
    private let configuration: ClientConfiguration
    private let correlator = ReplyCorrelator()
    private let coder = PayloadCoder()
    private let logger: Logger

    /// Creates a client.
    ///
    /// - Parameters:
    ///   - transport: How requests travel (for example `TCPClientTransport`).
    ///   - configuration: Timeouts and default headers.
    ///   - logger: The logger for client events.
    public init(
        transport: any ClientTransport,
        configuration: ClientConfiguration = .init(),
        logger: Logger = Logger(label: "courier.client")
    ) {
        self.transport = transport
        self.configuration = configuration
        self.logger = logger
    }

    /// The number of calls waiting for replies.
    public var pendingCalls: Int { correlator.pendingCount }

    // MARK: Typed API

    /// Sends a request and waits for its reply.
    ///
    /// - Parameters:
    ///   - pattern: The contract to call.
    ///   - request: The request payload.
    ///   - timeout: How long to wait; default ``ClientConfiguration/defaultTimeout``.
    ///   - headers: Metadata sent with the request.
    /// - Returns: The handler's reply.
    /// - Throws: ``CourierError``: ``CourierError/Code/timedOut``, ``CourierError/Code/noHandler``, a remote
    ///   error with the handler's code, ``CourierError/Code/cancelled``, ``CourierError/Code/decodingFailed``,
    ///   ``CourierError/Code/transportUnavailable``, …
    public func send<Request, Response>(
        _ pattern: MessagePattern<Request, Response>,
        _ request: Request,
        timeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> Response {
        let reply = try await send(pattern.name, payload: try coder.encode(request), timeout: timeout, headers: headers)
        return try coder.decode(Response.self, from: reply)
    }

    /// Sends an event. Returns once the transport accepted it; no handler replies.
    public func emit<Payload>(
        _ pattern: EventPattern<Payload>,
        _ payload: Payload,
        headers: [String: String] = [:]
    ) async throws {
        try await emit(pattern.name, payload: try coder.encode(payload), headers: headers)
    }

    /// Sends several events on one pattern, in order, and returns once the transport accepted them all: NestJS's
    /// `emitBatch`, on every transport.
    ///
    /// The whole batch is handed over at once (one TCP write, one Redis pipeline, one librdkafka produce loop), so a
    /// producer of many events spares a wait per event. Every payload is encoded before anything is sent: one that
    /// cannot be encoded (or, on TCP, is too large for a frame) fails the batch and sends nothing. Otherwise the
    /// first failure is thrown; events before it may have been accepted (see
    /// ``ClientTransport/emit(batch:)``). An empty batch sends nothing.
    ///
    /// - Parameters:
    ///   - pattern: The event contract.
    ///   - payloads: The events' payloads, sent in this order.
    ///   - headers: Metadata sent with every event.
    public func emitBatch<Payload>(
        _ pattern: EventPattern<Payload>,
        _ payloads: some Sequence<Payload>,
        headers: [String: String] = [:]
    ) async throws {
        try await emitBatch(pattern.name, payloads: try payloads.map { try coder.encode($0) }, headers: headers)
    }

    /// Sends a request and returns the stream of its replies.
    ///
    /// The request is sent before this returns; iterate the result to receive the replies.
    ///
    /// - Parameters:
    ///   - pattern: The contract to call.
    ///   - request: The request payload.
    ///   - timeout: How long the whole stream may take (the handler can extend it); default
    ///     ``ClientConfiguration/defaultTimeout``.
    ///   - idleTimeout: How long to wait for each element after the previous one (or after sending, for the
    ///     first); `nil` (the default): only `timeout` applies. For long streams, a generous `timeout` with a short
    ///     `idleTimeout` notices a worker that stopped sending without cutting off one that is still working.
    ///   - headers: Metadata sent with the request.
    public func sendStream<Request, Element>(
        _ pattern: StreamPattern<Request, Element>,
        _ request: Request,
        timeout: Duration? = nil,
        idleTimeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> ReplyStream<Element> {
        ReplyStream(
            raw: try await sendStream(pattern.name, payload: try coder.encode(request), timeout: timeout,
                                      idleTimeout: idleTimeout, headers: headers),
            coder: coder
        )
    }

    // MARK: Untyped API

    /// Sends a request with a raw JSON payload and returns the raw JSON reply (`null` when the reply had no value).
    public func send(
        _ pattern: String,
        json: JSONValue,
        timeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> JSONValue {
        let reply = try await send(pattern, payload: try coder.encode(json), timeout: timeout, headers: headers)
        return try coder.decode(JSONValue.self, from: reply)
    }

    /// Sends an event with a raw JSON payload.
    public func emit(_ pattern: String, json: JSONValue, headers: [String: String] = [:]) async throws {
        try await emit(pattern, payload: try coder.encode(json), headers: headers)
    }

    /// Sends several events with raw JSON payloads (see ``emitBatch(_:_:headers:)``).
    public func emitBatch(_ pattern: String, json: [JSONValue], headers: [String: String] = [:]) async throws {
        try await emitBatch(pattern, payloads: try json.map { try coder.encode($0) }, headers: headers)
    }

    /// Sends a request with a raw JSON payload and returns its replies as JSON (`timeout` and `idleTimeout` as for
    /// ``sendStream(_:_:timeout:idleTimeout:headers:)``).
    public func sendStream(
        _ pattern: String,
        json: JSONValue,
        timeout: Duration? = nil,
        idleTimeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> ReplyStream<JSONValue> {
        ReplyStream(
            raw: try await sendStream(pattern, payload: try coder.encode(json), timeout: timeout,
                                      idleTimeout: idleTimeout, headers: headers),
            coder: coder
        )
    }

    /// Sends a request whose payload is raw JSON bytes; returns the reply's raw JSON bytes, or `nil` when the
    /// reply carried no value.
    public func send(
        _ pattern: String,
        payload: ByteBuffer,
        timeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> ByteBuffer? {
        let (request, id, timeout) = try await prepareRequest(pattern, payload, timeout, headers)
        let transport = self.transport
        do {
            // A handler's onward call never waits past the handler's deadline, even if the callee extends it.
            return try await correlator.awaitReply(id: id, pattern: pattern, timeout: timeout,
                                                   extensionLimit: CallDeadline.current) {
                transport.send(request)
            }
        } catch {
            transport.release(correlationID: id)
            throw error
        }
    }

    /// Sends an event whose payload is raw JSON bytes.
    public func emit(_ pattern: String, payload: ByteBuffer, headers: [String: String] = [:]) async throws {
        try await connect()
        let event = WireRequest(pattern: pattern, payload: payload, correlationID: nil, headers: mergedHeaders(headers))
        do {
            try await transport.emit(event)
        } catch {
            throw CourierError.wrapping(error, as: .transportUnavailable, "could not emit '\(pattern)'")
        }
    }

    /// Sends several events whose payloads are raw JSON bytes (see ``emitBatch(_:_:headers:)``).
    public func emitBatch(_ pattern: String, payloads: [ByteBuffer], headers: [String: String] = [:]) async throws {
        guard !payloads.isEmpty else { return }
        try await connect()
        let headers = mergedHeaders(headers)
        let events = payloads.map { WireRequest(pattern: pattern, payload: $0, correlationID: nil, headers: headers) }
        do {
            try await transport.emit(batch: events)
        } catch {
            throw CourierError.wrapping(error, as: .transportUnavailable,
                                        "could not emit a batch of \(events.count) '\(pattern)' events")
        }
    }

    /// Sends a request whose payload is raw JSON bytes; returns the raw JSON of each reply (`timeout` and
    /// `idleTimeout` as for ``sendStream(_:_:timeout:idleTimeout:headers:)``).
    public func sendStream(
        _ pattern: String,
        payload: ByteBuffer,
        timeout: Duration? = nil,
        idleTimeout: Duration? = nil,
        headers: [String: String] = [:]
    ) async throws -> AsyncThrowingStream<ByteBuffer, any Error> {
        let (request, id, timeout) = try await prepareRequest(pattern, payload, timeout, headers)
        let transport = self.transport
        let stream = correlator.openStream(id: id, pattern: pattern, timeout: timeout, idleTimeout: idleTimeout,
                                           extensionLimit: CallDeadline.current) {
            transport.release(correlationID: id)
        }
        transport.send(request)
        return stream
    }

    // MARK: Native client and lifecycle

    /// Connects now rather than on the first call (NestJS's `ClientProxy.connect()`), so that the first call's
    /// deadline is not spent connecting and a broker that cannot be reached is found at start-up.
    ///
    /// Calls connect by themselves; this is never required. It returns at once when the client is connected.
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` when the transport cannot connect.
    public func connect() async throws {
        do {
            try await transport.connect(replies: correlator)
        } catch {
            throw CourierError.wrapping(error, as: .transportUnavailable, "cannot connect (\(transport.name))")
        }
    }

    /// The transport's native client, for what Courier does not wrap (for TCP, the NIO `Channel`).
    ///
    /// - Throws: ``CourierError`` when the transport cannot connect or its native client is not a `Native`.
    public func unwrap<Native>(as type: Native.Type = Native.self) async throws -> Native {
        let native = try await transport.nativeClient(replies: correlator)
        guard let typed = native as? Native else {
            throw CourierError(
                .unprocessable,
                "the \(transport.name) client is a \(Swift.type(of: native)), not \(Native.self)"
            )
        }
        return typed
    }

    /// Fails every pending call with ``CourierError/Code/transportUnavailable`` and closes the transport.
    public func shutdown() async {
        correlator.shutdown()
        await transport.close()
    }

    // MARK: Internals

    /// Connects, waiting at most `timeout` and only while the calling task is not cancelled. The attempt itself
    /// goes on: other calls share it, and the next call finds it done.
    private func connect(within timeout: Duration, pattern: String) async throws {
        let outcome = OneShot<Result<Void, CourierError>>()
        Task { [self] in
            do {
                try await connect()
                outcome.deliver(.success(()))
            } catch {
                outcome.deliver(.failure(CourierError.wrapping(error, as: .transportUnavailable, "cannot connect")))
            }
        }
        let name = transport.name
        let timer = Task {
            try await Task.sleep(for: timeout)
            outcome.deliver(.failure(CourierError(.timedOut, "could not connect (\(name)) for '\(pattern)' within \(timeout)")))
        }
        defer { timer.cancel() }
        try await withTaskCancellationHandler {
            try await outcome.value.get()
        } onCancel: {
            outcome.deliver(.failure(CourierError(.cancelled, "the call to '\(pattern)' was cancelled while connecting")))
        }
    }

    /// Connects if needed and builds a request with a new correlation id and the call's effective timeout.
    private func prepareRequest(
        _ pattern: String,
        _ payload: ByteBuffer,
        _ timeout: Duration?,
        _ headers: [String: String]
    ) async throws -> (WireRequest, id: String, timeout: Duration) {
        var timeout = try effectiveTimeout(timeout, pattern: pattern)
        if transport.isConnected {
            try await connect()  // returns at once
        } else {
            // Connecting counts against the call's deadline.
            let clock = ContinuousClock()
            let started = clock.now
            try await connect(within: timeout, pattern: pattern)
            timeout -= clock.now - started
            guard timeout > .zero else {
                throw CourierError(.timedOut, "no time left for '\(pattern)' after connecting (\(transport.name))")
            }
        }
        let id = CorrelationID.make()
        let request = WireRequest(
            pattern: pattern,
            payload: payload,
            correlationID: id,
            headers: mergedHeaders(headers),
            timeout: timeout
        )
        return (request, id, timeout)
    }

    private func effectiveTimeout(_ requested: Duration?, pattern: String) throws -> Duration {
        var timeout = requested ?? configuration.defaultTimeout
        if let deadline = CallDeadline.current {
            let left = Duration.nanoseconds((deadline - .now()).nanoseconds)
            guard left > .zero else {
                throw CourierError(.timedOut, "no time left for '\(pattern)': the calling handler's deadline passed")
            }
            timeout = min(timeout, left)
        }
        return timeout
    }

    private func mergedHeaders(_ headers: [String: String]) -> [String: String] {
        if configuration.defaultHeaders.isEmpty { return headers }
        return configuration.defaultHeaders.merging(headers) { _, call in call }
    }
}
