//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Logging
import NIOCore
import Synchronization

/// Runs a microservice's handlers for what its transport receives: routing, decoding, bounded concurrency,
/// replies and errors, and the bookkeeping that lets a graceful shutdown wait for in-flight work.
final class HandlerDispatcher: InboundDispatcher {
    /// Waiters are unsafe continuations, each removed under the lock and resumed once: a checked continuation's
    /// layout is not known outside the standard library, and handling the (usually empty) idle waiters after every
    /// message went through value witnesses.
    private struct DrainState {
        var isDraining = false
        /// When the graceful shutdown stops waiting for in-flight work, once it has begun.
        var deadline: NIODeadline?
        var inFlight = 0
        var drainWaiters: [(UInt64, UnsafeContinuation<Void, Never>)] = []
        var nextWaiterID: UInt64 = 0
        var idleWaiters: [UnsafeContinuation<Void, Never>] = []
    }

    private let routes: RouteTable<RegisteredHandler>
    /// The exact routes again, in a dictionary of concrete types: `RouteTable`'s generic lookup is not specialised
    /// outside CourierCore, and cost 4 % of a worker's CPU per call.
    private let exactRoutes: [String: RegisteredHandler]
    private let permits: AsyncSemaphore
    private let client: CourierClient?
    private let logger: Logger
    private let state = Mutex(DrainState())
    private let eventFailures = Atomic<Int>(0)

    /// The handler slots not taken now (by running handlers, or by messages past their admission).
    var availableHandlerSlots: Int? { permits.availablePermits }

    init(router: MessageRouter, configuration: MicroserviceConfiguration, client: CourierClient?, logger: Logger) {
        self.routes = router.routes
        var exactRoutes: [String: RegisteredHandler] = [:]
        for route in router.routes.patterns where !route.isWildcard {
            exactRoutes[route.text] = router.routes.value(for: route.text)
        }
        self.exactRoutes = exactRoutes
        self.permits = AsyncSemaphore(permits: configuration.maxConcurrentHandlers)
        self.client = client
        self.logger = logger
    }

    /// The number of event handlers that failed (their errors are logged, never sent).
    var failedEvents: Int { eventFailures.load(ordering: .relaxed) }

    // MARK: InboundDispatcher

    func dispatch(_ message: InboundMessage, in group: inout DiscardingTaskGroup) async {
        await dispatch(message, in: &group, startImmediately: false)
    }

    func dispatch(_ message: InboundMessage, in group: inout DiscardingTaskGroup, startImmediately: Bool) async {
        guard await admit() else {
            message.onHandled?(.abandoned)
            return
        }
        let route = self.route(for: message.request.pattern)
        if startImmediately, let route, let run = route.handler.runSynchronously {
            // Started immediately, a handler that never suspends would run to completion on this thread before the
            // reader goes on, as it does here: running it in place spares creating and completing its task.
            let outcome = await handleSynchronously(message, route: route.text, kind: route.handler.kind, run: run)
            finished(message, outcome)
            return
        }
        let operation: @Sendable @concurrent () async -> Void = {
            self.finished(message, await self.handle(message, route: route))
        }
        if startImmediately, #available(macOS 26, *) {
            // The reader runs on the event loop its handlers prefer: starting the handler here spares enqueueing
            // it on that executor and switching to it.
            group.addImmediateTask(operation: operation)
        } else {
            group.addTask(operation: operation)
        }
    }

    func handleInPlace(_ message: InboundMessage) async -> HandlingOutcome {
        guard await admit() else { return .abandoned }
        let route = route(for: message.request.pattern)
        let outcome: HandlingOutcome
        if let route, let run = route.handler.runSynchronously {
            outcome = await handleSynchronously(message, route: route.text, kind: route.handler.kind, run: run)
        } else {
            outcome = await handle(message, route: route)
        }
        finishedOne()
        return outcome
    }

    func handleNowIfSynchronous(_ message: InboundMessage) -> Bool {
        guard let route = route(for: message.request.pattern), let run = route.handler.runSynchronously,
            permits.tryAcquire(), countInFlight()
        else { return false }
        let (outcome, reply) = runSynchronously(message, route: route.text, kind: route.handler.kind, run: run)
        if let handed = replyWithoutWaiting(reply, after: outcome, to: message.replyWriter) {
            finished(message, handed)
        } else if let reply, let writer = message.replyWriter {
            // A writer that must wait for this reply: the handler ran, so its reply goes out from a task of its own
            // (the message stays counted in flight until then, which a graceful shutdown waits for).
            Task { self.finished(message, await self.reply(awaiting: reply, after: outcome, to: writer)) }
        }
        return true
    }

    /// Takes a handler slot and counts the message in flight; false (after waiting until cancelled while the
    /// service drains) when it must not be handled.
    private func admit() async -> Bool {
        guard await permits.acquire() else { return false }
        guard countInFlight() else {
            await Self.waitUntilCancelled()
            return false
        }
        return true
    }

    /// Counts a message that took a handler slot as in flight; while the service drains, gives the slot back and
    /// returns false.
    private func countInFlight() -> Bool {
        let accepted = state.withLock { state -> Bool in
            guard !state.isDraining else { return false }
            state.inFlight += 1
            return true
        }
        if !accepted { permits.release() }
        return accepted
    }

    func draining() async {
        let id = state.withLock { state -> UInt64 in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.isDraining || Task.isCancelled { return true }
                    state.drainWaiters.append((id, continuation))
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
                guard let index = state.drainWaiters.firstIndex(where: { $0.0 == id }) else { return nil }
                return state.drainWaiters.remove(at: index).1
            }
            waiter?.resume()
        }
    }

    func reportBadInput(_ reason: String, metadata: TransportMetadata) {
        logger.warning(
            "rejected input",
            metadata: [
                "reason": "\(reason)", "transport": "\(metadata.transport)",
                "remote": "\(metadata.remoteAddress ?? metadata.channel ?? "-")",
            ]
        )
    }

    // MARK: Draining

    /// Stops taking new work: messages dispatched from now on are held back. `timeout` is how long the shutdown
    /// waits for in-flight work (``shutdownDeadline``).
    func beginDraining(timeout: Duration) {
        let deadline = NIODeadline.now() + .nanoseconds(timeout.nanosecondCount)
        let waiters = state.withLock { state -> [(UInt64, UnsafeContinuation<Void, Never>)] in
            state.isDraining = true
            if state.deadline == nil { state.deadline = deadline }
            defer { state.drainWaiters.removeAll() }
            return state.drainWaiters
        }
        for (_, waiter) in waiters { waiter.resume() }
    }

    /// Waits until no handler is running, or `timeout` passes. Returns whether all finished.
    func waitUntilIdle(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await withUnsafeContinuation { continuation in
                    // Not registered once the timeout won (cancelled before the waiters are released below, under
                    // the same lock): a waiter registered after that release would wait until the last handler ends.
                    let resumeNow = self.state.withLock { state -> Bool in
                        if state.inFlight == 0 || Task.isCancelled { return true }
                        state.idleWaiters.append(continuation)
                        return false
                    }
                    if resumeNow { continuation.resume() }
                }
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            // The idle waiter cannot be cancelled; release it so the group can finish.
            let waiters = state.withLock { state in
                defer { state.idleWaiters.removeAll() }
                return state.idleWaiters
            }
            for waiter in waiters { waiter.resume() }
            return first
        }
    }

    /// The number of handlers running now.
    var inFlight: Int { state.withLock { $0.inFlight } }

    /// Whether the graceful shutdown has begun.
    var isDraining: Bool { state.withLock { $0.isDraining } }

    var shutdownDeadline: NIODeadline? { state.withLock { $0.deadline } }

    /// Gives back the message's handler slot and reports how it went.
    private func finished(_ message: InboundMessage, _ outcome: HandlingOutcome) {
        finishedOne()
        message.onHandled?(outcome)
    }

    /// Gives back the handler slot ``admit()`` took.
    private func finishedOne() {
        permits.release()
        let waiters = state.withLock { state -> [UnsafeContinuation<Void, Never>] in
            state.inFlight -= 1
            guard state.inFlight == 0 else { return [] }
            defer { state.idleWaiters.removeAll() }
            return state.idleWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    private static func waitUntilCancelled() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
    }

    // MARK: Handling one message

    /// The route a pattern matches (the exact one first), and its handler.
    private func route(for pattern: String) -> (text: String, handler: RegisteredHandler)? {
        if let exact = exactRoutes[pattern] { return (pattern, exact) }
        if let (wildcard, handler) = routes.lookup(pattern) { return (wildcard.text, handler) }
        return nil
    }

    // The handling path is split into small functions that are not inlined into each other: an async function's
    // frame holds every value any inlined part keeps across a suspension, and a worker holding 10,000 calls keeps
    // 10,000 frames. Inlined, the frame was about 4 KB per call; error and reply paths now get frames only when
    // they run.
    /// Handles `message` with the handler of its `route` (`nil`: no handler matches).
    @discardableResult
    @inline(never)
    func handle(
        _ message: InboundMessage,
        route: (text: String, handler: RegisteredHandler)?
    ) async -> HandlingOutcome {
        let request = message.request
        let replies = request.correlationID.flatMap { id in
            message.replyWriter.map { ReplyEmitter(correlationID: id, writer: $0) }
        }
        guard let (route, handler) = route else {
            await replyNoHandler(to: request, replies: replies)
            return .unhandled
        }
        let context = makeContext(for: message, route: route, replies: replies)
        let value: ByteBuffer?
        do {
            let deadline = context.deadline
            if deadline == nil, CallDeadline.current == nil {
                // Events and calls without a timeout: nothing to bind, which spares a task-local push per message.
                value = try await handler.run(request.payload, context)
            } else {
                value = try await CallDeadline.$context.withValue(context) {
                    try await handler.run(request.payload, context)
                }
            }
        } catch {
            context.end()
            return await handleFailure(error, of: request, context: context, replies: replies)
        }
        context.end()
        guard let replies else { return .succeeded }
        return await reply(value, kind: handler.kind, replies: replies, context: context)
    }

    /// Handles a message whose handler is synchronous, in the calling task: runs the handler and hands its reply to
    /// the writer without suspending, unless the writer needs to (then the reply is awaited, as ``handle(_:route:)``
    /// does).
    @inline(never)
    private func handleSynchronously(
        _ message: InboundMessage,
        route: String,
        kind: RegisteredHandler.Kind,
        run: (ByteBuffer, MessageContext) throws -> ByteBuffer?
    ) async -> HandlingOutcome {
        let (outcome, reply) = runSynchronously(message, route: route, kind: kind, run: run)
        if let handed = replyWithoutWaiting(reply, after: outcome, to: message.replyWriter) { return handed }
        guard let reply, let writer = message.replyWriter else { return outcome }
        return await self.reply(awaiting: reply, after: outcome, to: writer)
    }

    /// Hands a synchronous handler's final reply (if any) to `writer` if it takes it without waiting, and returns
    /// the message's outcome; `nil` when nothing was written and the reply must be awaited through `write`.
    private func replyWithoutWaiting(
        _ reply: WireReply?,
        after outcome: HandlingOutcome,
        to writer: (any ReplyWriter)?
    ) -> HandlingOutcome? {
        guard let reply, let writer else { return outcome }
        do {
            return try writer.writeFinalWithoutWaiting(reply) ? outcome : nil
        } catch let error as CourierError where error.rejectsTheMessageItself {
            return nil  // awaited instead, where the caller can be told (`replyRejected`)
        } catch {
            return replyLost(error, after: outcome)
        }
    }

    /// Writes a synchronous handler's final reply and returns the message's outcome.
    private func reply(awaiting reply: WireReply, after outcome: HandlingOutcome, to writer: any ReplyWriter) async
        -> HandlingOutcome
    {
        do {
            try await writer.write(reply)
            return outcome
        } catch let error as CourierError where error.rejectsTheMessageItself {
            return await replyRejected(error, correlationID: reply.correlationID, replyWasAnError: reply.error != nil,
                                       writer: writer)
        } catch {
            return replyLost(error, after: outcome)
        }
    }

    /// The outcome of a message whose reply could not be sent: as in `reply(_:kind:replies:context:)`, a result
    /// the caller did not get is left unacknowledged; a failure stays a failure, as in `handleFailure`.
    private func replyLost(_ error: any Error, after outcome: HandlingOutcome) -> HandlingOutcome {
        logger.debug("could not send the reply: \(error)")
        return outcome.isSuccess ? .abandoned : outcome
    }

    /// The outcome of a message whose reply the transport refused for what it is (too large for the transport,
    /// or addressed to an illegal reply topic): handling the message again would give the same reply, so it is
    /// not left unacknowledged (on Kafka that would stop its partition for good); the caller gets the error
    /// instead of waiting for its timeout, if that reply gets through.
    /// (An error reply that was refused is not followed by another.)
    private func replyRejected(
        _ error: CourierError,
        correlationID: String,
        replyWasAnError: Bool,
        writer: any ReplyWriter
    ) async -> HandlingOutcome {
        logger.warning("a reply was refused; the caller gets an error instead", metadata: [
            "correlation-id": "\(correlationID)", "error": "\(error)",
        ])
        if !replyWasAnError {
            try? await writer.write(.failure(correlationID: correlationID, error: error))
        }
        return .failed(error)
    }

    /// Runs a synchronous handler; returns how it went and the final reply to send (`nil` for events).
    private func runSynchronously(
        _ message: InboundMessage,
        route: String,
        kind: RegisteredHandler.Kind,
        run: (ByteBuffer, MessageContext) throws -> ByteBuffer?
    ) -> (HandlingOutcome, WireReply?) {
        let request = message.request
        let replies = request.correlationID.flatMap { id in
            message.replyWriter.map { ReplyEmitter(correlationID: id, writer: $0) }
        }
        let context = makeContext(for: message, route: route, replies: replies)
        do {
            // The deadline is not bound for onward calls (`CallDeadline`): a synchronous handler makes none (calls
            // are async), and a task it starts outlives its request. Binding a task-local also allocates twice when
            // the handler runs outside any task, as it does when a TCP or Redis reader hands it over at once.
            let value = try run(request.payload, context)
            guard let replies else { return (.succeeded, nil) }
            let response = kind == .message ? value : nil
            return (.succeeded, WireReply(correlationID: replies.correlationID, response: response, isDisposed: true))
        } catch {
            report(error, for: request, logger: context.logger)
            let (outcome, failure) = finish(after: error, of: request)
            return (outcome, replies.map { .failure(correlationID: $0.correlationID, error: failure) })
        }
    }

    /// How a handler that threw `error` finished, and the error to send its caller.
    private func finish(after error: any Error, of request: WireRequest) -> (HandlingOutcome, any Error) {
        // A handler cancelled because the worker is stopping did not finish: leave the message unacknowledged.
        let outcome: HandlingOutcome = Task.isCancelled ? .abandoned : .failed(error)
        // A handler cut short because the worker is stopping did not crash: the service went away (503), which
        // is not NestJS's "Internal server error".
        let failure = Task.isCancelled && !(error is CourierError)
            ? CourierError.unavailable("the service stopped before '\(request.pattern)' finished") : error
        return (outcome, failure)
    }

    @inline(never)
    private func makeContext(for message: InboundMessage, route: String, replies: ReplyEmitter?) -> MessageContext {
        let request = message.request
        let deadline = replies != nil ? request.timeout.map { NIODeadline.now() + .nanoseconds($0.nanosecondCount) } : nil
        return MessageContext(
            pattern: request.pattern,
            route: route,
            correlationID: request.correlationID,
            headers: request.headers,
            transport: message.metadata,
            client: client,
            baseLogger: logger,
            deadline: deadline,
            replies: replies
        )
    }

    @inline(never)
    private func replyNoHandler(to request: WireRequest, replies: ReplyEmitter?) async {
        if let replies {
            try? await replies.write(.noHandler(correlationID: replies.correlationID))
            logger.debug("no handler", metadata: ["pattern": "\(request.pattern)"])
        } else {
            logger.warning(
                "There is no matching event handler defined in the remote service. Event pattern: \(request.pattern)"
            )
        }
    }

    @inline(never)
    private func handleFailure(
        _ error: any Error,
        of request: WireRequest,
        context: MessageContext,
        replies: ReplyEmitter?
    ) async -> HandlingOutcome {
        report(error, for: request, logger: context.logger)
        let (outcome, failure) = finish(after: error, of: request)
        guard let replies else { return outcome }
        do {
            try await replies.write(.failure(correlationID: replies.correlationID, error: failure))
        } catch {
            logger.debug("could not send an error reply: \(error)")
        }
        return outcome
    }

    @inline(never)
    private func reply(
        _ value: ByteBuffer?,
        kind: RegisteredHandler.Kind,
        replies: ReplyEmitter,
        context: MessageContext
    ) async -> HandlingOutcome {
        do {
            switch kind {
            case .message:
                try await replies.write(WireReply(correlationID: replies.correlationID, response: value,
                                                  isDisposed: true))
            case .stream, .event:
                try await replies.write(WireReply(correlationID: replies.correlationID, isDisposed: true))
            }
            return .succeeded
        } catch let error as CourierError where error.rejectsTheMessageItself {
            return await replyRejected(error, correlationID: replies.correlationID, replyWasAnError: false,
                                       writer: replies.writer)
        } catch {
            // The work is done but the caller did not get the answer: leave the message unacknowledged so that a
            // transport with redelivery delivers it again (at-least-once).
            context.logger.debug("could not send the reply: \(error)")
            return .abandoned
        }
    }

    private func report(_ error: any Error, for request: WireRequest, logger: Logger) {
        if request.isEvent { eventFailures.add(1, ordering: .relaxed) }
        if let courier = error as? CourierError {
            // Coded errors are the handler's answer; they are the caller's business, not a worker fault.
            let level: Logger.Level = request.isEvent || courier.code == .encodingFailed ? .warning : .debug
            logger.log(level: level, "handler failed: \(courier)")
        } else {
            logger.error("handler threw: \(String(reflecting: error))")
        }
    }
}
