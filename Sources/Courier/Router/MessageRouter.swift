//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The handlers of a microservice, registered per pattern.
///
/// Build one, register handlers, and hand it to a ``Microservice``:
///
/// ```swift
/// var router = MessageRouter()
/// router.on(Math.sum) { numbers, context in numbers.reduce(0, +) }
/// router.on(Math.countdown) { n, context, replies in
///     for value in stride(from: n, through: 1, by: -1) { try await replies.send(value) }
/// }
/// router.on(Audit.log) { entry, context in await store.append(entry) }
/// ```
///
/// Patterns may be exact or contain wildcard segments (see ``RoutePattern``). Registration never throws: a
/// duplicate or invalid pattern is reported by ``validate()``, which ``Microservice/run()`` calls before it
/// starts serving.
public struct MessageRouter: Sendable {
    var routes = RouteTable<RegisteredHandler>()
    private(set) var problems: [CourierError] = []
    let coder = PayloadCoder()

    /// An empty router.
    public init() {}

    /// The registered patterns.
    public var patterns: [RoutePattern] { routes.patterns }

    /// Throws the first registration problem (a duplicate pattern, `**` not in last position, an empty pattern).
    public func validate() throws {
        if let problem = problems.first { throw problem }
    }

    // MARK: Typed handlers

    /// Registers a request/reply handler.
    public mutating func on<Request, Response>(
        _ pattern: MessagePattern<Request, Response>,
        handler: @escaping @Sendable (Request, MessageContext) async throws -> Response
    ) {
        let coder = self.coder
        register(pattern.name, kind: .message) { payload, context in
            let request = try coder.decode(Request.self, from: payload)
            return try coder.encode(try await handler(request, context))
        }
    }

    /// Registers a synchronous request/reply handler: one that computes its reply without suspending.
    ///
    /// A closure with no `await` in it selects this overload. Where the transport reads on an event loop (TCP,
    /// Redis), the handler runs in the connection's reader, as NestJS runs a handler that returns a plain value:
    /// no task is created for it, which is the largest part of a trivial call's cost on the worker. While it runs,
    /// that connection reads nothing else, so keep CPU-heavy work in an `async` handler (for example one that
    /// hands the work to a thread of its own). Timeouts, errors, headers and the context behave as for
    /// asynchronous handlers.
    public mutating func on<Request, Response>(
        _ pattern: MessagePattern<Request, Response>,
        handler: @escaping @Sendable (Request, MessageContext) throws -> Response
    ) {
        let coder = self.coder
        registerSynchronous(pattern.name, kind: .message) { payload, context in
            let request = try coder.decode(Request.self, from: payload)
            return try coder.encode(try handler(request, context))
        }
    }

    /// Registers a streaming handler: it sends any number of elements, and the stream ends when it returns.
    public mutating func on<Request, Element>(
        _ pattern: StreamPattern<Request, Element>,
        handler: @escaping @Sendable (Request, MessageContext, StreamWriter<Element>) async throws -> Void
    ) {
        let coder = self.coder
        register(pattern.name, kind: .stream) { payload, context in
            let request = try coder.decode(Request.self, from: payload)
            try await handler(request, context, StreamWriter(context: context, coder: coder))
            return nil
        }
    }

    /// Registers an event handler. It never replies; errors are logged and counted on the worker.
    public mutating func on<Payload>(
        _ pattern: EventPattern<Payload>,
        handler: @escaping @Sendable (Payload, MessageContext) async throws -> Void
    ) {
        let coder = self.coder
        register(pattern.name, kind: .event) { payload, context in
            try await handler(try coder.decode(Payload.self, from: payload), context)
            return nil
        }
    }

    /// Registers a synchronous event handler: one that does its work without suspending. Like a synchronous
    /// request handler (the `on` overload for a `MessagePattern` above), it runs in the transport's
    /// reader, without a task of its own, where the transport reads on an event loop.
    public mutating func on<Payload>(
        _ pattern: EventPattern<Payload>,
        handler: @escaping @Sendable (Payload, MessageContext) throws -> Void
    ) {
        let coder = self.coder
        registerSynchronous(pattern.name, kind: .event) { payload, context in
            try handler(try coder.decode(Payload.self, from: payload), context)
            return nil
        }
    }

    // MARK: Untyped handlers

    /// Registers a request/reply handler on raw JSON, for patterns without a shared Swift contract.
    public mutating func onMessage(
        _ pattern: String,
        handler: @escaping @Sendable (JSONValue, MessageContext) async throws -> JSONValue
    ) {
        on(MessagePattern<JSONValue, JSONValue>(pattern), handler: handler)
    }

    /// Registers a streaming handler on raw JSON.
    public mutating func onStream(
        _ pattern: String,
        handler: @escaping @Sendable (JSONValue, MessageContext, StreamWriter<JSONValue>) async throws -> Void
    ) {
        on(StreamPattern<JSONValue, JSONValue>(pattern), handler: handler)
    }

    /// Registers an event handler on raw JSON.
    public mutating func onEvent(
        _ pattern: String,
        handler: @escaping @Sendable (JSONValue, MessageContext) async throws -> Void
    ) {
        on(EventPattern<JSONValue>(pattern), handler: handler)
    }

    /// Registers a synchronous request/reply handler on raw JSON (see the typed `on` for what synchronous means).
    public mutating func onMessage(
        _ pattern: String,
        handler: @escaping @Sendable (JSONValue, MessageContext) throws -> JSONValue
    ) {
        on(MessagePattern<JSONValue, JSONValue>(pattern), handler: handler)
    }

    /// Registers a synchronous event handler on raw JSON (see the typed `on` for what synchronous means).
    public mutating func onEvent(
        _ pattern: String,
        handler: @escaping @Sendable (JSONValue, MessageContext) throws -> Void
    ) {
        on(EventPattern<JSONValue>(pattern), handler: handler)
    }

    private mutating func register(
        _ name: String,
        kind: RegisteredHandler.Kind,
        run: @escaping @Sendable (ByteBuffer, MessageContext) async throws -> ByteBuffer?
    ) {
        insert(RegisteredHandler(kind: kind, runSynchronously: nil, run: run), for: name)
    }

    private mutating func registerSynchronous(
        _ name: String,
        kind: RegisteredHandler.Kind,
        run: @escaping @Sendable (ByteBuffer, MessageContext) throws -> ByteBuffer?
    ) {
        insert(RegisteredHandler(kind: kind, runSynchronously: run, run: run), for: name)
    }

    private mutating func insert(_ handler: RegisteredHandler, for name: String) {
        do {
            try routes.insert(handler, for: RoutePattern(name))
        } catch let error as CourierError {
            problems.append(error)
        } catch {
            problems.append(CourierError(.unprocessable, "cannot register '\(name)': \(error)"))
        }
    }
}

/// A type-erased handler: decodes the payload, runs the user's closure, encodes the reply.
struct RegisteredHandler: Sendable {
    enum Kind: Sendable {
        case message, stream, event
    }

    let kind: Kind
    /// `run` without suspending, for handlers registered as synchronous closures: the dispatcher may run these in
    /// the transport's reader instead of in a task of their own.
    let runSynchronously: (@Sendable (ByteBuffer, MessageContext) throws -> ByteBuffer?)?
    /// Returns the encoded reply value for message handlers, `nil` otherwise.
    let run: @Sendable (ByteBuffer, MessageContext) async throws -> ByteBuffer?
}
