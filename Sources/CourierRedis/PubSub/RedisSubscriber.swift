//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import NIOPosix

/// A dedicated pub/sub connection: `SUBSCRIBE` and `PSUBSCRIBE`, with messages delivered as an `AsyncSequence`.
///
/// ```swift
/// let subscriber = try await RedisSubscriber.connect(configuration: configuration)
/// try await subscriber.subscribe(["orders"])          // returns once Redis confirmed
/// try await subscriber.subscribe(patterns: ["audit.*"])
/// for await message in subscriber.messages { … }      // message.channel, message.pattern, message.payload
/// ```
///
/// In RESP2 a subscribed connection can run nothing but (un)subscriptions, hence a connection of its own.
/// Messages arrive on ``messages`` rather than through a handler closure so that a slow consumer pushes back:
/// when ``RedisConfiguration/subscriberBufferSize`` messages are waiting, the subscriber stops reading from the
/// socket (see ``RedisPubSubMessages``).
///
/// The subscriber reconnects like ``RedisConnection`` and then subscribes again to every channel and pattern it
/// had. Messages published while it was disconnected are lost: Redis pub/sub delivers at most once.
public final class RedisSubscriber: Sendable {
    /// The configuration this subscriber was made with.
    public let configuration: RedisConfiguration
    /// Every message received, in order, until ``close()``. Iterate it once.
    public let messages: RedisPubSubMessages
    private let channel: ReconnectingRedisChannel

    private init(channel: ReconnectingRedisChannel, messages: RedisPubSubMessages) {
        self.configuration = channel.configuration
        self.channel = channel
        self.messages = messages
    }

    deinit {
        channel.closeSoon()
    }

    /// Connects and authenticates a subscriber connection, with no subscriptions yet.
    ///
    /// - Parameters:
    ///   - configuration: Where to connect and how. ``RedisConfiguration/database`` does not matter to pub/sub.
    ///   - eventLoopGroup: Where the connection's event loop comes from. Default: NIO's process-wide singleton.
    ///   - logger: Receives connection-loss and reconnection messages. Default: a logger labelled `courier.redis`.
    /// - Returns: The connected subscriber, which reconnects by itself from now on until ``close()``.
    /// - Throws: ``CourierCore/CourierError`` with code ``CourierCore/CourierError/Code/transportUnavailable`` if
    ///   this first connection fails.
    public static func connect(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "courier.redis")
    ) async throws -> RedisSubscriber {
        let channel = ReconnectingRedisChannel(
            configuration: configuration,
            eventLoop: eventLoopGroup.any(),
            logger: logger,
            isSubscriber: true
        )
        guard let messages = try await channel.start() else {
            preconditionFailure("a subscriber channel always makes a message sequence")
        }
        return RedisSubscriber(channel: channel, messages: messages)
    }

    /// Whether the subscriber's connection is open now. While it reconnects, messages published meanwhile are lost
    /// to it (pub/sub keeps nothing), and its subscriptions are made again once it is back.
    public var isConnected: Bool { channel.isConnected }

    /// Subscribes to channels; returns once Redis confirmed each one, so a message published afterwards arrives.
    ///
    /// - Throws: ``CourierCore/CourierError`` (``CourierCore/CourierError/Code/transportUnavailable`` while
    ///   disconnected, ``CourierCore/CourierError/Code/timedOut`` past the command timeout) or ``RedisError``
    ///   (such as `NOPERM` for an ACL user without access to a channel). Channels not confirmed are not
    ///   subscribed again after a reconnection.
    public func subscribe(_ channels: [String]) async throws {
        try await channel.changeSubscription(subscribe: true, target: .channels, names: channels)
    }

    /// Subscribes to glob-style channel patterns (`orders.*`); messages then carry the matching pattern.
    ///
    /// - Throws: As ``subscribe(_:)``.
    public func subscribe(patterns: [String]) async throws {
        try await channel.changeSubscription(subscribe: true, target: .patterns, names: patterns)
    }

    /// Unsubscribes from channels. They are forgotten at once (not subscribed again after a reconnection);
    /// while connected, returns once Redis confirmed, and while disconnected, returns at once.
    ///
    /// - Throws: ``CourierCore/CourierError`` if the connection fails while waiting for the confirmation.
    public func unsubscribe(_ channels: [String]) async throws {
        try await channel.changeSubscription(subscribe: false, target: .channels, names: channels)
    }

    /// Unsubscribes from channel patterns, as ``unsubscribe(_:)`` does for channels.
    ///
    /// - Throws: As ``unsubscribe(_:)``.
    public func unsubscribe(patterns: [String]) async throws {
        try await channel.changeSubscription(subscribe: false, target: .patterns, names: patterns)
    }

    /// Closes the connection, stops reconnecting, and ends ``messages`` after the messages already received.
    public func close() async {
        await channel.close()
    }
}
