//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore

/// What a Redis client transport holds while connected: a connection for its commands (`PUBLISH`, `XADD`), a
/// subscriber for its reply channels, and the task handing their replies to the caller's correlator.
struct RedisClientConnection: Sendable {
    let commands: RedisConnection
    let subscriber: RedisSubscriber
    let reader: Task<Void, Never>

    /// Connects both connections, subscribes `channels` (confirmed before it returns) and starts reading replies.
    ///
    /// - Parameters:
    ///   - decode: The reply in a message on a reply channel, or nil to ignore the message.
    ///   - extended: Told, before the reply is handed over, of a reply that extends its call's deadline, with the
    ///     channel it came on.
    static func open(
        configuration: RedisConfiguration,
        channels: [String],
        logger: Logger,
        replies: any ReplyReceiver,
        decode: @escaping @Sendable (ByteBuffer) -> WireReply?,
        extended: (@Sendable (_ channel: String, _ by: Duration) -> Void)? = nil
    ) async throws -> RedisClientConnection {
        let commands = try await RedisConnection.connect(configuration: configuration, logger: logger)
        let subscriber: RedisSubscriber
        do {
            subscriber = try await RedisSubscriber.connect(configuration: configuration, logger: logger)
            if !channels.isEmpty { try await subscriber.subscribe(channels) }
        } catch {
            await commands.close()
            throw error
        }
        let reader = Task {
            for await message in subscriber.messages {
                guard let reply = decode(message.payload) else {
                    logger.debug("ignored a message that is not a reply", metadata: ["channel": "\(message.channel)"])
                    continue
                }
                if let extra = reply.extendDeadline { extended?(message.channel, extra) }
                replies.receive(reply)
            }
        }
        return RedisClientConnection(commands: commands, subscriber: subscriber, reader: reader)
    }

    /// Closes both connections and waits for the reader to finish.
    func close() async {
        await subscriber.close()
        await commands.close()
        await reader.value
    }
}
