//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import NIOPosix

/// A connection to Redis that runs any command, pipelines concurrent callers, and reconnects by itself.
///
/// ```swift
/// let redis = try await RedisConnection.connect(configuration: RedisConfiguration(url: "redis://127.0.0.1:6379"))
/// _ = try await redis.send(["SET", "greeting", "hello"])
/// let greeting = try await redis.send(["GET", "greeting"]).string   // "hello"
/// await redis.close()
/// ```
///
/// - Pipelining: concurrent ``send(_:)`` calls share the socket; commands are written as they come (one flush
///   per event-loop tick) and replies are matched to callers in order.
/// - Errors: an error reply throws ``RedisError`` and leaves the connection usable. Transport conditions throw
///   ``CourierCore/CourierError``: ``CourierCore/CourierError/Code/transportUnavailable`` while disconnected (at
///   once, never hanging) and for the commands pending when the connection is lost,
///   ``CourierCore/CourierError/Code/timedOut`` past the command timeout,
///   ``CourierCore/CourierError/Code/cancelled`` when the caller's task is cancelled.
/// - Reconnection: a lost connection is replaced at once and then with backoff
///   (``RedisConfiguration/reconnectBackoff``), replaying `AUTH` and `SELECT`. No manual action is needed.
/// - Blocking commands (`BLPOP`, `XREADGROUP … BLOCK`) hold up every command behind them on the same connection;
///   give them a connection of their own. They never block a thread: NIO does the I/O.
/// - Pub/sub needs a ``RedisSubscriber``: in RESP2 a subscribed connection runs nothing else.
public final class RedisConnection: Sendable {
    /// The configuration this connection was made with.
    public let configuration: RedisConfiguration
    private let channel: ReconnectingRedisChannel

    private init(channel: ReconnectingRedisChannel) {
        self.configuration = channel.configuration
        self.channel = channel
    }

    deinit {
        channel.closeSoon()
    }

    /// Connects, authenticates and selects the database.
    ///
    /// - Parameters:
    ///   - configuration: Where to connect and how.
    ///   - eventLoopGroup: Where the connection's event loop comes from. Default: NIO's process-wide singleton.
    ///   - logger: Receives connection-loss and reconnection messages. Default: a logger labelled `courier.redis`.
    /// - Returns: The connected connection, which reconnects by itself from now on until ``close()``.
    /// - Throws: ``CourierCore/CourierError`` with code ``CourierCore/CourierError/Code/transportUnavailable`` if
    ///   this first connection fails (unreachable, refused, `AUTH` or `SELECT` rejected: the message says which,
    ///   and `underlying` holds the cause).
    public static func connect(
        configuration: RedisConfiguration,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "courier.redis")
    ) async throws -> RedisConnection {
        let channel = ReconnectingRedisChannel(
            configuration: configuration,
            eventLoop: eventLoopGroup.any(),
            logger: logger,
            isSubscriber: false
        )
        _ = try await channel.start()
        return RedisConnection(channel: channel)
    }

    /// Runs a command with the configured ``RedisConfiguration/commandTimeout``.
    ///
    /// - Parameter command: The command name and its arguments, such as `["SET", "k", "v"]` or
    ///   `["XINFO", "STREAM", "orders"]`.
    /// - Returns: The reply.
    /// - Throws: ``RedisError`` for an error reply; ``CourierCore/CourierError`` for transport conditions (see
    ///   the type's documentation).
    public func send(_ command: [RESPArgument]) async throws -> RESPValue {
        try await send(command, timeout: configuration.commandTimeout)
    }

    /// Runs a command with its own timeout.
    ///
    /// A command that times out closes the connection, which reconnects at once: the commands pipelined behind it
    /// fail with ``CourierCore/CourierError/Code/transportUnavailable``. A cancelled caller returns at once and its
    /// reply is discarded when it arrives, so the commands behind it are unaffected.
    ///
    /// - Parameters:
    ///   - command: The command name and its arguments.
    ///   - timeout: How long the reply may take once the command is written; `nil` waits as long as the connection
    ///     lives (for `BLPOP k 0` on a dedicated connection).
    /// - Returns: The reply.
    /// - Throws: ``RedisError`` for an error reply; ``CourierCore/CourierError`` for transport conditions.
    public func send(_ command: [RESPArgument], timeout: Duration?) async throws -> RESPValue {
        guard !command.isEmpty else {
            throw CourierError(.unprocessable, "a Redis command needs at least its name")
        }
        let name = String(command[0].description.prefix(32))
        guard !Task.isCancelled else {
            throw CourierError(.cancelled, "Redis command '\(name)' was cancelled before it was sent")
        }
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        channel.submit(try RedisRequest(command, timeout: timeout, promise: promise))
        return try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CourierError(.cancelled, "Redis command '\(name)' was cancelled; its reply will be discarded"))
        }
    }

    /// Queues a command with the configured timeout without suspending; the future completes with its reply.
    ///
    /// For transports' `send`, which must not suspend: it spares a task per command.
    package func enqueue(_ command: [RESPArgument]) -> EventLoopFuture<RESPValue> {
        let promise = channel.eventLoop.makePromise(of: RESPValue.self)
        do {
            channel.submit(try RedisRequest(command, timeout: configuration.commandTimeout, promise: promise))
        } catch {
            promise.fail(error)
        }
        return promise.futureResult
    }

    /// Queues a command; `answered` runs on the connection's event loop with Redis's answer or the failure.
    package func enqueue(
        _ command: [RESPArgument],
        answered: @escaping @Sendable (Result<RESPValue, any Error>) -> Void
    ) {
        do {
            channel.submit(try RedisRequest(command, timeout: configuration.commandTimeout, completion: .callback(answered)))
        } catch {
            answered(.failure(error))
        }
    }

    /// Queues a command nobody waits for, counted in `commands` until Redis answers it.
    package func enqueue(_ command: [RESPArgument], countedIn commands: RedisUnansweredCommands) {
        commands.sent()
        do {
            channel.submit(try RedisRequest(command, timeout: configuration.commandTimeout, completion: .counted(commands)))
        } catch {
            commands.answered(failure: error)
        }
    }

    /// Closes the connection and stops reconnecting. Commands pending or sent later fail with
    /// ``CourierCore/CourierError/Code/transportUnavailable``.
    public func close() async {
        await channel.close()
    }
}
