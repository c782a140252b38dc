//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// One Redis socket at a time, replaced whenever it is lost: the engine under ``RedisConnection`` and
/// ``RedisSubscriber``.
///
/// All state lives on one event loop. A connection attempt is a TCP connect plus the handshake (`AUTH`, `SELECT`,
/// and for subscribers the `SUBSCRIBE`/`PSUBSCRIBE` of everything subscribed so far). Requests submitted while an
/// attempt is in progress wait for its outcome (bounded by the connect timeout); requests submitted while waiting
/// out the backoff after a failed attempt fail at once with ``CourierError/Code/transportUnavailable``, so callers
/// never hang on a server that is down. The first attempt after a loss is immediate; later ones follow
/// ``RedisConfiguration/reconnectBackoff``. No task is spawned: attempts are futures and timers on the event loop.
final class ReconnectingRedisChannel: Sendable {
    enum SubscriptionTarget: Sendable {
        case channels
        case patterns
    }

    private enum Phase {
        case idle
        case connecting(attempt: Int)
        case connected(any Channel)
        case waitingToReconnect(attempt: Int, lastError: CourierError, timer: Scheduled<Void>)
        case closed
    }

    private struct State {
        var phase: Phase = .idle
        /// Requests waiting for the attempt in progress.
        var queued: [RedisRequest] = []
        var isFlushScheduled = false
        /// Set for subscribers: where pushed messages go, and what to subscribe again after reconnecting.
        var pushes: RedisPubSubSink?
        var channels: Set<String> = []
        var patterns: Set<String> = []
    }

    let configuration: RedisConfiguration
    let eventLoop: any EventLoop
    private let logger: Logger
    private let isSubscriber: Bool
    private let state: NIOLoopBoundBox<State>
    /// Requests submitted from outside the event loop, waiting for the loop (see ``submit(_:)``).
    private let inbox = Mutex<(requests: [RedisRequest], isDrainScheduled: Bool)>(([], false))

    init(configuration: RedisConfiguration, eventLoop: any EventLoop, logger: Logger, isSubscriber: Bool) {
        self.configuration = configuration
        self.eventLoop = eventLoop
        var logger = logger
        logger[metadataKey: "redis.endpoint"] = "\(configuration.endpointDescription)"
        self.logger = logger
        self.isSubscriber = isSubscriber
        self.state = .makeBoxSendingValue(State(), eventLoop: eventLoop)
    }

    private var endpoint: String { configuration.endpointDescription }

    /// Whether a connection is open now (readable from any thread; the phase itself lives on the event loop).
    var isConnected: Bool { connected.load(ordering: .relaxed) }
    private let connected = Atomic(false)

    /// Changes the phase; on the event loop.
    private func setPhase(_ phase: Phase) {
        state.value.phase = phase
        let isConnected = if case .connected = phase { true } else { false }
        connected.store(isConnected, ordering: .relaxed)
    }

    private var closedError: CourierError { .unavailable("the connection to \(endpoint) is closed") }

    // MARK: Lifecycle

    /// Makes the first connection; throws if it fails (wrong address, refused, wrong password …), and from then
    /// on reconnects by itself. For a subscriber, returns its message sequence.
    func start() async throws -> RedisPubSubMessages? {
        try await eventLoop.flatSubmit { () -> EventLoopFuture<RedisPubSubMessages?> in
            let messages: RedisPubSubMessages?
            if self.isSubscriber {
                let (pushes, sequence) = RedisPubSubSink.make(
                    bufferSize: self.configuration.subscriberBufferSize,
                    eventLoop: self.eventLoop
                )
                self.state.value.pushes = pushes
                messages = sequence
            } else {
                messages = nil
            }
            let outcome = self.eventLoop.makePromise(of: Void.self)
            self.attempt(1, outcome: outcome)
            return outcome.futureResult.map { messages }
        }.get()
    }

    /// Closes the connection and stops reconnecting; whatever is pending fails with
    /// ``CourierError/Code/transportUnavailable``.
    func close() async {
        try? await eventLoop.flatSubmit { self.closeOnLoop() }.get()
    }

    /// ``close()`` without waiting, for `deinit`s.
    func closeSoon() {
        eventLoop.execute { _ = self.closeOnLoop() }
    }

    private func closeOnLoop() -> EventLoopFuture<Void> {
        var closed = eventLoop.makeSucceededVoidFuture()
        let previous = state.value.phase
        // Closed first, so the handler's closing callback sees a deliberate close, not a lost connection.
        setPhase(.closed)
        switch previous {
        case .connected(let channel):
            channel.triggerUserOutboundEvent(RedisChannelHandler.Close(reason: closedError), promise: nil)
            closed = channel.closeFuture
        case .waitingToReconnect(_, _, let timer):
            timer.cancel()
        case .idle, .connecting, .closed:
            break  // an attempt in progress sees `.closed` when it finishes and closes its channel
        }
        failQueued(with: closedError)
        state.value.pushes?.finish()
        return closed
    }

    // MARK: Requests

    /// Sends `request` on the current connection, or queues it behind the attempt in progress, or fails it fast.
    ///
    /// From outside the event loop, requests gather in an inbox that one event-loop task drains: concurrent callers
    /// share a task (and a wake-up of the loop) instead of scheduling one each. Order is kept: the inbox is
    /// drained before any request submitted on the loop.
    func submit(_ request: RedisRequest) {
        if eventLoop.inEventLoop {
            drainInbox()
            submitOnLoop(request)
            return
        }
        let schedule = inbox.withLock { inbox -> Bool in
            inbox.requests.append(request)
            defer { inbox.isDrainScheduled = true }
            return !inbox.isDrainScheduled
        }
        if schedule { eventLoop.execute { self.drainInbox() } }
    }

    private func drainInbox() {
        let requests = inbox.withLock { inbox -> [RedisRequest] in
            inbox.isDrainScheduled = false
            guard !inbox.requests.isEmpty else { return [] }
            defer { inbox.requests.removeAll(keepingCapacity: true) }
            return inbox.requests
        }
        for request in requests { submitOnLoop(request) }
    }

    private func submitOnLoop(_ request: RedisRequest) {
        switch state.value.phase {
        case .connected(let channel):
            channel.write(request, promise: nil)
            scheduleFlush(channel)
        case .connecting:
            state.value.queued.append(request)
        case .waitingToReconnect(let attempt, let lastError, _):
            request.completion.fail(
                CourierError.unavailable(
                    "not connected to \(endpoint) (reconnect attempt \(attempt) pending): \(lastError.message)",
                    underlying: lastError
                )
            )
        case .idle, .closed:
            request.completion.fail(closedError)
        }
    }

    /// Flushes once per event-loop tick, so the commands submitted meanwhile share one write.
    private func scheduleFlush(_ channel: any Channel) {
        guard !state.value.isFlushScheduled else { return }
        state.value.isFlushScheduled = true
        eventLoop.assumeIsolated().execute {
            self.state.value.isFlushScheduled = false
            channel.flush()
        }
    }

    private func failQueued(with error: CourierError) {
        let queued = state.value.queued
        state.value.queued = []
        for request in queued { request.completion.fail(error) }
    }

    // MARK: Subscriptions

    /// Subscribes to or unsubscribes from `names`; completes once Redis confirmed every name.
    ///
    /// Subscribed names are remembered (once confirmed) and subscribed again after every reconnection.
    /// Unsubscribing forgets them at once, so it succeeds without a round trip while disconnected; while a
    /// connection is being made, whose handshake may already have subscribed them, the UNSUBSCRIBE waits for it and
    /// follows. It succeeds even if the connection drops meanwhile: the next one does not subscribe them.
    func changeSubscription(subscribe: Bool, target: SubscriptionTarget, names: [String]) async throws {
        guard !names.isEmpty else { return }
        try await eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
            // SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE; confirmations carry the lowercase name.
            let kind = (target == .patterns ? "p" : "") + (subscribe ? "" : "un") + "subscribe"
            if !subscribe {
                switch target {
                case .channels: self.state.value.channels.subtract(names)
                case .patterns: self.state.value.patterns.subtract(names)
                }
                switch self.state.value.phase {
                case .connected, .connecting: break
                case .waitingToReconnect, .idle, .closed: return self.eventLoop.makeSucceededVoidFuture()
                }
            }
            let promise = self.eventLoop.makePromise(of: RESPValue.self)
            do {
                self.submitOnLoop(
                    try RedisRequest(
                        [RESPArgument(kind.uppercased())] + names.map { RESPArgument($0) },
                        expectation: .confirmations(kind: kind, count: names.count),
                        timeout: self.configuration.commandTimeout,
                        promise: promise
                    )
                )
            } catch {
                return self.eventLoop.makeFailedFuture(error)
            }
            guard subscribe else {
                // Forgotten already: a connection that drops before confirming is replaced by one without them.
                return promise.futureResult.map { _ in }.flatMapErrorThrowing { error in
                    guard let lost = error as? CourierError, lost.code == .transportUnavailable || lost.code == .timedOut
                    else { throw error }
                }
            }
            return promise.futureResult.assumeIsolated().map { _ in
                switch target {
                case .channels: self.state.value.channels.formUnion(names)
                case .patterns: self.state.value.patterns.formUnion(names)
                }
            }.nonisolated()
        }.get()
    }

    // MARK: Connecting

    /// Makes attempt number `number`; `outcome` is set only for the first connection, whose failure is reported
    /// to the caller instead of retried.
    private func attempt(_ number: Int, outcome: EventLoopPromise<Void>?) {
        setPhase(.connecting(attempt: number))
        connectAndHandshake().whenComplete { result in
            self.attemptFinished(number, result: result, outcome: outcome)
        }
    }

    private func attemptFinished(
        _ number: Int,
        result: Result<any Channel, any Error>,
        outcome: EventLoopPromise<Void>?
    ) {
        guard case .connecting = state.value.phase else {  // closed meanwhile
            if case .success(let channel) = result { channel.close(promise: nil) }
            outcome?.fail(closedError)
            return
        }
        switch result {
        case .success(let channel):
            setPhase(.connected(channel))
            if outcome == nil { logger.info("reconnected to Redis", metadata: ["redis.attempt": "\(number)"]) }
            let queued = state.value.queued
            state.value.queued = []
            for request in queued { channel.write(request, promise: nil) }
            channel.flush()
            outcome?.succeed(())
        case .failure(let error):
            let reason = connectError(error)
            failQueued(with: reason)
            if let outcome {
                setPhase(.closed)
                state.value.pushes?.finish()
                outcome.fail(reason)
                return
            }
            let delay = configuration.reconnectBackoff.jitteredDelay(afterFailedAttempts: number)
            // Warn once per outage; the retries that follow are routine.
            logger.log(
                level: number == 1 ? .warning : .debug,
                "cannot reconnect to Redis, retrying in \(delay): \(reason.message)",
                metadata: ["redis.attempt": "\(number)"]
            )
            let timer = eventLoop.assumeIsolated().scheduleTask(in: TimeAmount(delay)) {
                self.attempt(number + 1, outcome: nil)
            }
            setPhase(.waitingToReconnect(attempt: number + 1, lastError: reason, timer: timer))
        }
    }

    private func connectError(_ error: any Error) -> CourierError {
        switch error {
        case let redis as RedisError:
            .unavailable("cannot connect to \(endpoint): Redis refused the handshake: \(redis.message)", underlying: redis)
        case let courier as CourierError:
            .unavailable("cannot connect to \(endpoint): \(courier.message)", underlying: courier)
        default:
            .unavailable("cannot connect to \(endpoint): \(error)", underlying: error)
        }
    }

    /// Called by the connection's handler, on the event loop, the moment a connection starts closing.
    private func connectionClosing(_ channel: ObjectIdentifier, reason: CourierError) {
        guard case .connected(let current) = state.value.phase, ObjectIdentifier(current) == channel else { return }
        logger.warning("Redis connection lost, reconnecting: \(reason.message)")
        attempt(1, outcome: nil)
    }

    private func connectAndHandshake() -> EventLoopFuture<any Channel> {
        let endpoint = self.endpoint
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let id = ObjectIdentifier(channel)
                    let handler = RedisChannelHandler(endpoint: endpoint, pushes: self.state.value.pushes) {
                        [weak self] reason in
                        self?.connectionClosing(id, reason: reason)
                    }
                    try channel.pipeline.syncOperations.addHandlers(
                        ByteToMessageHandler(RESPReplyDecoder()),
                        handler
                    )
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .flatMap { channel in
                self.handshake(on: channel)
                    .map { channel }
                    .flatMapError { error in
                        channel.close(promise: nil)
                        return self.eventLoop.makeFailedFuture(error)
                    }
            }
    }

    /// `AUTH` and `SELECT` as configured (or a `PING`, so that every connection proves it speaks to Redis), then
    /// for subscribers the subscriptions to restore. Every handshake command has the connect timeout.
    private func handshake(on channel: any Channel) -> EventLoopFuture<Void> {
        var commands: [([RESPArgument], RedisRequest.Expectation)] = []
        if let password = configuration.password {
            let credentials = configuration.username.map { [RESPArgument($0), RESPArgument(password)] }
            commands.append((["AUTH"] + (credentials ?? [RESPArgument(password)]), .reply))
        }
        if configuration.database != 0 {
            commands.append((["SELECT", RESPArgument(configuration.database)], .reply))
        }
        if commands.isEmpty {
            commands.append((["PING"], .reply))
        }
        let channels = state.value.channels
        if !channels.isEmpty {
            commands.append(
                (["SUBSCRIBE"] + channels.map { RESPArgument($0) }, .confirmations(kind: "subscribe", count: channels.count))
            )
        }
        let patterns = state.value.patterns
        if !patterns.isEmpty {
            commands.append(
                (["PSUBSCRIBE"] + patterns.map { RESPArgument($0) }, .confirmations(kind: "psubscribe", count: patterns.count))
            )
        }
        var replies: [EventLoopFuture<RESPValue>] = []
        do {
            for (arguments, expectation) in commands {
                let promise = eventLoop.makePromise(of: RESPValue.self)
                let request = try RedisRequest(
                    arguments,
                    expectation: expectation,
                    timeout: configuration.connectTimeout,
                    promise: promise
                )
                channel.write(request, promise: nil)
                replies.append(promise.futureResult)
            }
        } catch {
            return eventLoop.makeFailedFuture(error)
        }
        channel.flush()
        return EventLoopFuture.andAllSucceed(replies, on: eventLoop)
    }
}
