//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import Synchronization

/// The caller side of the Redis pub/sub transport, on NestJS's format by default (or Ascender's).
///
/// A request is published on the pattern's channel; its replies come back on the reply channel (NestJS:
/// `<pattern>.reply`, shared by every call on that pattern; Ascender: `_rpc:response` and `_rpc:error`). The client
/// subscribes to a reply channel once, on a subscriber connection of its own, and publishes only after Redis
/// confirmed the subscription, so no first reply is missed; it keeps the subscription for later calls, up to
/// ``RedisPubSubConfiguration/maxReplyChannels`` channels. Replies are matched by id; the first terminal reply
/// wins (pub/sub fans requests out to every subscribed worker). An event is published on its pattern's channel, and
/// `emit` returns once Redis answered (or, with ``RedisPubSubConfiguration/awaitsEventAcknowledgement`` off, once the
/// `PUBLISH` is queued).
///
/// A `PUBLISH` that reached no subscriber fails its call at once with
/// ``CourierCore/CourierError/Code/transportUnavailable`` (see
/// ``RedisPubSubConfiguration/failsCallsWithoutSubscribers``). While Redis is unreachable, calls fail at once too;
/// the connections reconnect by themselves and subscribe again.
///
/// `nativeClient` returns the `RedisConnection` the client publishes with, on which any command can run.
public final class RedisClientTransport: ClientTransport {
    public var name: String { "redis" }

    /// A reply channel's subscription.
    private enum Subscription {
        /// `SUBSCRIBE` sent; calls on the channel wait for Redis's confirmation before they publish.
        case pending(Task<Void, any Error>)
        /// Subscribed. No call sent on the channel waits for a reply past `busyUntil`: the latest deadline of its
        /// calls, extensions included (`distantFuture` for channels that are never let go).
        case confirmed(busyUntil: NIODeadline)
        /// Being let go (see ``RedisPubSubConfiguration/maxReplyChannels``): a call on it waits for the
        /// `UNSUBSCRIBE`, then subscribes again.
        case unsubscribing(Task<Void, Never>)
    }

    private let configuration: RedisPubSubConfiguration
    private let logger: Logger
    private let connection = RedisClientConnectionSlot(closedMessage: "the Redis client is closed")
    private let receiver = Mutex<(any ReplyReceiver)?>(nil)
    private let subscriptions = Mutex<[String: Subscription]>([:])
    /// When a new subscription last looked for idle channels (see ``letIdleChannelsGo``), in uptime nanoseconds.
    private let lastSweep = Atomic<Int64>(-1_000_000_000)
    /// Events published without waiting for Redis's answer that are not answered yet.
    private let unacknowledgedEvents: RedisUnansweredCommands

    /// Creates a client transport.
    ///
    /// - Parameters:
    ///   - configuration: The server and the wire format.
    ///   - logger: Where connection problems go. Default: a logger labelled `courier.redis.client`.
    public init(configuration: RedisPubSubConfiguration, logger: Logger = Logger(label: "courier.redis.client")) {
        self.configuration = configuration
        self.logger = logger
        unacknowledgedEvents = RedisUnansweredCommands { error in
            logger.warning("an event was not published", metadata: ["error": "\(error)"])
        }
    }

    public func connect(replies: any ReplyReceiver) async throws {
        _ = try await connection(replies: replies)
    }

    public var isConnected: Bool { connection.current != nil }

    public func nativeClient(replies: any ReplyReceiver) async throws -> any Sendable {
        try await connection(replies: replies).commands
    }

    public func send(_ request: WireRequest) {
        guard let id = request.correlationID else { return }
        guard let connection = connection.current else {
            fail(id, .unavailable("the Redis client is not connected"))
            return
        }
        guard connection.subscriber.isConnected else {
            // Its reply would be published while nobody listens for it: fail now rather than at the timeout.
            fail(id, .unavailable("the Redis client's reply connection is reconnecting"))
            return
        }
        let channels = configuration.format.replyChannels(forRequestsOn: request.pattern)
        let publish: [RESPArgument] = ["PUBLISH", RESPArgument(request.pattern),
                                       RESPArgument(configuration.format.encode(request))]
        let busyUntil = request.timeout.map { NIODeadline.now() + TimeAmount($0) } ?? .distantFuture
        if markBusy(channels, until: busyUntil) {
            // The usual case: no task, the reply is handled on the connection's event loop.
            connection.commands.enqueue(publish) { result in
                self.published(result, id: id, pattern: request.pattern)
            }
            return
        }
        Task {
            do {
                try await self.subscribe(channels, on: connection.subscriber, busyUntil: busyUntil)
            } catch {
                self.published(.failure(error), id: id, pattern: request.pattern)
                return
            }
            do {
                self.published(.success(try await connection.commands.send(publish)), id: id, pattern: request.pattern)
            } catch {
                self.published(.failure(error), id: id, pattern: request.pattern)
            }
        }
    }

    /// Fails the call if its PUBLISH failed or, when so configured, reached nobody.
    private func published(_ result: Result<RESPValue, any Error>, id: String, pattern: String) {
        switch result {
        case .success(let receivers):
            if configuration.failsCallsWithoutSubscribers, receivers.int == 0 {
                fail(id, .unavailable("no worker is subscribed to '\(pattern)' (PUBLISH reached nobody)"))
            }
        case .failure(let error):
            fail(id, CourierError.wrapping(error, as: .transportUnavailable, "could not publish '\(pattern)'"))
        }
    }

    /// Whether every channel in `channels` is subscribed; those that are are kept until at least `busyUntil`.
    private func markBusy(_ channels: [String], until busyUntil: NIODeadline) -> Bool {
        subscriptions.withLock { subscriptions in
            var allConfirmed = true
            for channel in channels {
                // One hash of the channel's name per call: this runs on every call.
                guard let index = subscriptions.index(forKey: channel),
                    case .confirmed(let current) = subscriptions.values[index]
                else {
                    allConfirmed = false
                    continue
                }
                if current < busyUntil { subscriptions.values[index] = .confirmed(busyUntil: busyUntil) }
            }
            return allConfirmed
        }
    }

    /// A handler extended its call's deadline (a reply on `channel` said so): keep the channel that long.
    private func extendBusy(_ channel: String, by extra: Duration) {
        _ = markBusy([channel], until: NIODeadline.now() + TimeAmount(extra))
    }

    public func emit(_ event: WireRequest) async throws {
        guard let connection = connection.current else {
            throw CourierError.unavailable("the Redis client is not connected")
        }
        let publish: [RESPArgument] = ["PUBLISH", RESPArgument(event.pattern),
                                       RESPArgument(configuration.format.encode(event))]
        do {
            guard !configuration.awaitsEventAcknowledgement else {
                _ = try await connection.commands.send(publish)
                return
            }
            try await publishUnacknowledged(publish, on: connection)
        } catch let error as CourierError {
            throw error
        } catch {
            throw CourierError.wrapping(error, as: .transportUnavailable, "could not publish '\(event.pattern)'")
        }
    }

    /// Pipelines one `PUBLISH` per event on the command connection. With event acknowledgements it waits for every
    /// answer and throws ``CourierCore/CourierError/batch(_:count:failures:firstUnsent:)`` naming every event Redis
    /// did not take; without, it waits only where an event finds `maxUnacknowledgedEvents` unanswered, as
    /// ``emit(_:)``, and stops at the first such wait that fails.
    public func emit(batch events: [WireRequest]) async throws {
        guard let connection = connection.current else {
            throw CourierError.unavailable("the Redis client is not connected")
        }
        guard let pattern = events.first?.pattern else { return }
        let publishes = events.map { event -> [RESPArgument] in
            ["PUBLISH", RESPArgument(event.pattern), RESPArgument(configuration.format.encode(event))]
        }
        if configuration.awaitsEventAcknowledgement {
            try await RedisBatchAnswers.wait(for: publishes.map { connection.commands.enqueue($0) }, pattern: pattern)
            return
        }
        for (index, publish) in publishes.enumerated() {
            do {
                try await publishUnacknowledged(publish, on: connection)
            } catch {
                throw CourierError.batch(pattern, count: events.count,
                                         failures: [(index, RedisBatchAnswers.failure(error))], firstUnsent: index + 1)
            }
        }
    }

    /// Queues an event's `PUBLISH` without waiting for its answer, unless `maxUnacknowledgedEvents` are unanswered:
    /// past the limit it waits for this one's answer (and so for every event before it on the connection), which
    /// bounds what a fast emitter queues.
    private func publishUnacknowledged(_ publish: [RESPArgument], on connection: RedisClientConnection) async throws {
        if unacknowledgedEvents.unanswered >= configuration.maxUnacknowledgedEvents {
            _ = try await connection.commands.send(publish)
        } else {
            connection.commands.enqueue(publish, countedIn: unacknowledgedEvents)
        }
    }

    public func close() async {
        await connection.close()?.close()
    }

    // MARK: Reply channels

    /// Returns once every channel in `channels` is subscribed and confirmed, each kept until at least `busyUntil`.
    private func subscribe(_ channels: [String], on subscriber: RedisSubscriber, busyUntil: NIODeadline) async throws {
        for channel in channels {
            enum Step {
                case done
                case wait(Task<Void, any Error>)
                case waitForUnsubscribe(Task<Void, Never>)
            }
            while true {
                let step = subscriptions.withLock { subscriptions -> Step in
                    switch subscriptions[channel] {
                    case .confirmed(let current):
                        if current < busyUntil { subscriptions[channel] = .confirmed(busyUntil: busyUntil) }
                        return .done
                    case .pending(let task):
                        return .wait(task)
                    case .unsubscribing(let task):
                        return .waitForUnsubscribe(task)
                    case nil:
                        letIdleChannelsGo(&subscriptions, subscriber: subscriber)
                        // One SUBSCRIBE per channel, however many calls wait for it.
                        let task = Task { try await subscriber.subscribe([channel]) }
                        subscriptions[channel] = .pending(task)
                        return .wait(task)
                    }
                }
                switch step {
                case .done:
                    break
                case .waitForUnsubscribe(let task):
                    // The UNSUBSCRIBE goes first on the subscriber connection; then the channel is free to subscribe.
                    await task.value
                    continue
                case .wait(let task):
                    do {
                        try await task.value
                    } catch {
                        // Let the next call try again.
                        subscriptions.withLock { subscriptions in
                            if case .pending(let current) = subscriptions[channel], current == task {
                                subscriptions[channel] = nil
                            }
                        }
                        throw error
                    }
                    let confirmed = subscriptions.withLock { subscriptions -> Bool in
                        switch subscriptions[channel] {
                        case .pending(let current) where current == task:
                            subscriptions[channel] = .confirmed(busyUntil: busyUntil)
                            return true
                        case .confirmed(let current):
                            if current < busyUntil { subscriptions[channel] = .confirmed(busyUntil: busyUntil) }
                            return true
                        case .pending, .unsubscribing, nil:
                            // Let go before this caller's turn (the calls of those who confirmed it first were past
                            // their deadlines): subscribe again rather than call an unsubscribed channel confirmed.
                            return false
                        }
                    }
                    if !confirmed { continue }
                }
                break
            }
        }
    }

    /// Once ``RedisPubSubConfiguration/maxReplyChannels`` channels are held, unsubscribes every reply channel that
    /// no call can still be waiting on (all its calls are a second past their deadlines). Under the subscriptions'
    /// lock.
    private func letIdleChannelsGo(_ subscriptions: inout [String: Subscription], subscriber: RedisSubscriber) {
        guard subscriptions.count >= configuration.maxReplyChannels else { return }
        // A sweep reads every channel: at most one a second, so that thousands of busy channels do not make every
        // new subscription cost a sweep of them all.
        let now = NIODeadline.now()
        let nanoseconds = Int64(now.uptimeNanoseconds)
        guard nanoseconds - lastSweep.load(ordering: .relaxed) >= 1_000_000_000 else { return }
        lastSweep.store(nanoseconds, ordering: .relaxed)
        // A second's grace: a late reply or extension may still be on its way when a call's deadline passes.
        let idleSince = now - .seconds(1)
        let idle = subscriptions.compactMap { channel, subscription -> String? in
            guard case .confirmed(let busyUntil) = subscription, busyUntil < idleSince else { return nil }
            return channel
        }
        guard !idle.isEmpty else { return }
        let logger = logger
        let task = Task {
            do {
                try await subscriber.unsubscribe(idle)
            } catch {
                // Forgotten by the subscriber either way: it does not subscribe them again after a reconnection.
                logger.debug("could not unsubscribe idle reply channels", metadata: ["error": "\(error)"])
            }
            self.subscriptions.withLock { subscriptions in
                for channel in idle {
                    if case .unsubscribing = subscriptions[channel] { subscriptions[channel] = nil }
                }
            }
        }
        for channel in idle { subscriptions[channel] = .unsubscribing(task) }
    }

    // MARK: Connecting

    private func fail(_ id: String, _ error: CourierError) {
        receiver.withLock { $0 }?.fail(correlationIDs: CollectionOfOne(id), with: error)
    }

    private func connection(replies: any ReplyReceiver) async throws -> RedisClientConnection {
        if let current = connection.current { return current }
        receiver.withLock { $0 = replies }
        return try await connection.get { try await self.open(replies: replies) }
    }

    private func open(replies: any ReplyReceiver) async throws -> RedisClientConnection {
        let format = configuration.format
        // Ascender's reply channels are fixed, so they are subscribed before the first call; NestJS's are per
        // pattern, subscribed by the first call on each.
        let fixed = format == .ascender ? format.replyChannels(forRequestsOn: "") : []
        let connection = try await RedisClientConnection.open(
            configuration: configuration.connection,
            channels: fixed,
            logger: logger,
            replies: replies,
            decode: { format.decodeReply($0) },
            extended: { [weak self] channel, extra in self?.extendBusy(channel, by: extra) }
        )
        subscriptions.withLock { subscriptions in
            for channel in fixed { subscriptions[channel] = .confirmed(busyUntil: .distantFuture) }
        }
        return connection
    }
}
