//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// The caller side of the Redis Streams transport.
///
/// A request or event is appended (`XADD`) to its pattern's stream, where it waits for a worker of the service's
/// consumer group even if none runs yet; `send` and `emit` return (or fail) once Redis stored it. Replies come back
/// on a pub/sub channel of this client's own (``RedisStreamsConfiguration/replyChannelPrefix`` + a random id),
/// subscribed and confirmed before the first request. A request no worker takes in time fails with
/// ``CourierCore/CourierError/Code/timedOut``, and workers skip it once its deadline has passed.
///
/// `nativeClient` returns the `RedisConnection` the client adds entries with, on which any command can run.
public final class RedisStreamsClientTransport: ClientTransport {
    public var name: String { "redis-streams" }

    private let configuration: RedisStreamsConfiguration
    private let logger: Logger
    private let replyChannel: String
    private let connection = RedisClientConnectionSlot(closedMessage: "the Redis Streams client is closed")
    private let receiver = Mutex<(any ReplyReceiver)?>(nil)

    /// Creates a client transport.
    ///
    /// - Parameters:
    ///   - configuration: The server and stream settings (``RedisStreamsConfiguration/group`` is not used).
    ///   - logger: Where connection problems go. Default: a logger labelled `courier.redis.streams.client`.
    public init(
        configuration: RedisStreamsConfiguration,
        logger: Logger = Logger(label: "courier.redis.streams.client")
    ) {
        self.configuration = configuration
        self.logger = logger
        self.replyChannel = configuration.replyChannelPrefix + UUID().uuidString.lowercased()
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
            fail(id, .unavailable("the Redis Streams client is not connected"))
            return
        }
        guard connection.subscriber.isConnected else {
            // Its reply would be published while nobody listens for it: fail now rather than at the timeout.
            fail(id, .unavailable("the Redis Streams client's reply connection is reconnecting"))
            return
        }
        // No task per call: a failure is reported from the connection's event loop.
        connection.commands.enqueue(addCommand(request, replyTo: replyChannel)) { result in
            guard case .failure(let error) = result else { return }
            self.fail(id, CourierError.wrapping(error, as: .transportUnavailable,
                                                "could not add '\(request.pattern)' to its stream"))
        }
    }

    public func emit(_ event: WireRequest) async throws {
        guard let connection = connection.current else {
            throw CourierError.unavailable("the Redis Streams client is not connected")
        }
        do {
            _ = try await connection.commands.send(addCommand(event, replyTo: nil))
        } catch let error as CourierError {
            throw error
        } catch {
            throw CourierError.wrapping(error, as: .transportUnavailable, "could not add '\(event.pattern)' to its stream")
        }
    }

    /// Pipelines one `XADD` per event and waits for every answer; throws
    /// ``CourierCore/CourierError/batch(_:count:failures:firstUnsent:)`` naming every event Redis did not add.
    public func emit(batch events: [WireRequest]) async throws {
        guard let connection = connection.current else {
            throw CourierError.unavailable("the Redis Streams client is not connected")
        }
        guard let pattern = events.first?.pattern else { return }
        try await RedisBatchAnswers.wait(
            for: events.map { connection.commands.enqueue(addCommand($0, replyTo: nil)) },
            pattern: pattern
        )
    }

    public func close() async {
        await connection.close()?.close()
    }

    private func addCommand(_ request: WireRequest, replyTo: String?) -> [RESPArgument] {
        ["XADD", RESPArgument(configuration.stream(for: request.pattern))]
            + RedisStreamEntry.addArguments(request, replyTo: replyTo, maxLength: configuration.maxLength)
    }

    private func fail(_ id: String, _ error: CourierError) {
        receiver.withLock { $0 }?.fail(correlationIDs: CollectionOfOne(id), with: error)
    }

    private func connection(replies: any ReplyReceiver) async throws -> RedisClientConnection {
        if let current = connection.current { return current }
        receiver.withLock { $0 = replies }
        return try await connection.get { try await self.open(replies: replies) }
    }

    private func open(replies: any ReplyReceiver) async throws -> RedisClientConnection {
        try await RedisClientConnection.open(
            configuration: configuration.connection,
            channels: [replyChannel],
            logger: logger,
            replies: replies,
            decode: { message in
                guard case .reply(let reply)? = try? NestJSEnvelope.decode(message) else { return nil }
                return reply
            }
        )
    }
}
