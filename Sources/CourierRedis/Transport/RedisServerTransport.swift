//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The worker side of the Redis pub/sub transport, on NestJS's format by default (or Ascender's).
///
/// It subscribes to each exact pattern's channel (`SUBSCRIBE`) and to each wildcard route as a glob
/// (`PSUBSCRIBE orders.*`), on a subscriber connection of its own, and publishes replies on a second connection.
///
/// **Pub/sub is broadcast and at most once.** Every worker subscribed to a channel handles every message on it
/// (two instances of a service both handle each request; the caller keeps the first reply), and a message
/// published while no worker is subscribed, or while a worker is reconnecting, is lost. For load-balanced,
/// durable work use the Streams transport (``RedisStreamsServerTransport``).
///
/// `nativeServer()` returns the `RedisConnection` the worker publishes with, for any other command.
public final class RedisServerTransport: ServerTransport {
    public var name: String { "redis" }

    private let configuration: RedisPubSubConfiguration
    private let logger: Logger
    private let publisher = Mutex<RedisConnection?>(nil)
    private let subscribed = OneShot<Result<Void, CourierError>>()

    /// Creates a worker transport.
    ///
    /// - Parameters:
    ///   - configuration: The server and the wire format.
    ///   - logger: Where connection problems go. Default: a logger labelled `courier.redis.server`.
    public init(configuration: RedisPubSubConfiguration, logger: Logger = Logger(label: "courier.redis.server")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The server as a URL, for messages: `redis://host:port[/db]` (never the password).
    public var url: String { configuration.connection.endpointDescription }

    /// Returns once the worker's subscriptions are confirmed (it then receives what is published).
    ///
    /// - Throws: The error that stopped the worker from starting.
    public func waitUntilSubscribed() async throws {
        try await subscribed.value.get()
    }

    public func nativeServer() async throws -> any Sendable {
        guard let connection = publisher.withLock({ $0 }) else {
            throw CourierError.unavailable("the Redis worker is not serving")
        }
        return connection
    }

    public func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
        let exact = patterns.filter { !$0.isWildcard }.map(\.text)
        let globs = patterns.filter(\.isWildcard).map(Self.glob(for:))
        let subscriptions = Subscriptions(patterns)
        let publisher: RedisConnection
        let subscriber: RedisSubscriber
        // Both connections share one event loop, so a reply published from a handler on it stays on its thread.
        let eventLoop = MultiThreadedEventLoopGroup.singleton.any()
        do {
            publisher = try await RedisConnection.connect(configuration: configuration.connection,
                                                          eventLoopGroup: eventLoop, logger: logger)
            do {
                subscriber = try await RedisSubscriber.connect(configuration: configuration.connection,
                                                               eventLoopGroup: eventLoop, logger: logger)
                do {
                    if !exact.isEmpty { try await subscriber.subscribe(exact) }
                    if !globs.isEmpty { try await subscriber.subscribe(patterns: globs) }
                } catch {
                    await subscriber.close()
                    throw error
                }
            } catch {
                await publisher.close()
                throw error
            }
        } catch {
            let failure = CourierError.wrapping(error, as: .transportUnavailable, "the Redis worker cannot start")
            subscribed.deliver(.failure(failure))
            throw failure
        }
        self.publisher.withLock { $0 = publisher }
        subscribed.deliver(.success(()))
        logger.info("redis worker subscribed", metadata: ["channels": "\(exact)", "globs": "\(globs)"])

        let format = configuration.format
        let logger = self.logger
        let finalReplies = RedisUnansweredCommands { error in
            logger.warning("a reply could not be published", metadata: ["error": "\(error)"])
        }
        // The reader and its handlers run on the connections' event loop (like TCP's): receiving, handling and
        // publishing the reply then need no thread hand-offs.
        let executor = configuration.runsHandlersOnEventLoop ? EventLoopTaskExecutor(eventLoop) : nil
        await withTaskExecutorPreference(executor) {
        await withDiscardingTaskGroup { group in
            group.addTask {
                // Draining: stop receiving. Messages already received are refused by the draining dispatcher (pub/sub
                // has no redelivery: a message that arrives while the worker stops is lost).
                await dispatcher.draining()
                await subscriber.close()
            }
            for await message in subscriber.messages {
                if let glob = message.pattern, !subscriptions.accepts(channel: message.channel, throughGlob: glob) {
                    continue
                }
                let request: WireRequest
                do {
                    guard let decoded = try format.decodeInbound(message.payload, channel: message.channel) else {
                        continue
                    }
                    request = decoded
                } catch {
                    dispatcher.reportBadInput(
                        "malformed message: \(error)",
                        metadata: TransportMetadata(transport: "redis", channel: message.channel)
                    )
                    continue
                }
                let writer = request.isEvent
                    ? nil
                    : RedisReplyPublisher(connection: publisher,
                                          destination: .pubSub(format: format, requestChannel: message.channel,
                                                               finalReplies: finalReplies))
                let inbound = InboundMessage(
                    request: request,
                    metadata: TransportMetadata(transport: "redis", channel: message.channel),
                    replyWriter: writer
                )
                // On the event loop, a handler starts at once on this thread, which is where it would run anyway.
                await dispatcher.dispatch(inbound, in: &group, startImmediately: executor != nil)
            }
        }
        }
        self.publisher.withLock { $0 = nil }
        await subscriber.close()
        await publisher.close()
    }

    /// Which copy of a published message a worker handles. Redis sends a message once per subscription that
    /// matches its channel: a `message` for an exact route's channel and a `pmessage` for each matching glob.
    /// The exact copy is handled, else the copy of the first wildcard route that matches, so that a message is
    /// handled once however many routes overlap (`orders.created` and `orders.*`, or `orders.*` and `*.created`).
    struct Subscriptions: Sendable {
        private let exact: Set<String>
        private let wildcards: [(route: RoutePattern, glob: String)]

        init(_ patterns: [RoutePattern]) {
            exact = Set(patterns.filter { !$0.isWildcard }.map(\.text))
            wildcards = patterns.filter(\.isWildcard).map { ($0, RedisServerTransport.glob(for: $0)) }
        }

        /// Whether the copy of a message on `channel` delivered through the subscription to `glob` is the one to
        /// handle. Redis globs match more than routes (`*` spans dots), and reply channels are never work.
        func accepts(channel: String, throughGlob glob: String) -> Bool {
            if channel.hasSuffix(RedisWireFormat.replySuffix) || channel.hasPrefix("_rpc:") { return false }
            if exact.contains(channel) { return false }
            guard let first = wildcards.first(where: { $0.route.matches(channel) }) else { return false }
            return first.glob == glob
        }
    }

    /// The Redis glob for a wildcard route: `*` and `**` become `*`; glob characters in literal segments are
    /// escaped.
    static func glob(for pattern: RoutePattern) -> String {
        pattern.text.split(separator: ".", omittingEmptySubsequences: false).map { segment -> String in
            if segment == "*" || segment == "**" { return "*" }
            var escaped = ""
            for character in segment {
                if "*?[]\\".contains(character) { escaped.append("\\") }
                escaped.append(character)
            }
            return escaped
        }.joined(separator: ".")
    }
}
