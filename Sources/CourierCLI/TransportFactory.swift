//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierKafka
import CourierRedis
import CourierTCP

/// Builds transports from URLs (`tcp://host:port`, `kafka://host:port[,host:port…]`,
/// `redis://[user:pass@]host:port[/db]` for pub/sub, `redis+streams://…` for Streams).
enum TransportFactory {
    static let supportedSchemes = ["tcp", "kafka", "redis", "redis+streams"]

    static func client(for text: String) throws -> any ClientTransport {
        let url = try TransportURL(text)
        switch url.scheme {
        case "tcp": return TCPClientTransport(configuration: try TCPConfiguration(url: url))
        case "kafka":
            return KafkaClientTransport(configuration: try KafkaConfiguration(url: url),
                                        replyTo: try KafkaReplyStrategy(url: url))
        case "redis": return RedisClientTransport(configuration: try RedisPubSubConfiguration(url: url))
        case "redis+streams": return RedisStreamsClientTransport(configuration: try RedisStreamsConfiguration(url: url))
        default: throw unsupported(url)
        }
    }

    static func server(for text: String) throws -> any ServerTransport {
        let url = try TransportURL(text)
        switch url.scheme {
        case "tcp": return TCPServerTransport(configuration: try TCPConfiguration(url: url))
        case "kafka": return KafkaServerTransport(configuration: try KafkaConfiguration(url: url))
        case "redis": return RedisServerTransport(configuration: try RedisPubSubConfiguration(url: url))
        case "redis+streams": return RedisStreamsServerTransport(configuration: try RedisStreamsConfiguration(url: url))
        default: throw unsupported(url)
        }
    }

    /// The address a server is reachable at once it serves, as a URL.
    static func readyURL(of server: any ServerTransport) async throws -> String {
        if let tcp = server as? TCPServerTransport {
            let address = try await tcp.localAddress()
            let host = address.ipAddress ?? "127.0.0.1"
            return "tcp://\(host.contains(":") ? "[\(host)]" : host):\(address.port ?? 0)"
        }
        if let kafka = server as? KafkaServerTransport {
            // Ready means the group assigned this worker its partitions: records now reach it.
            await kafka.waitUntilAssigned()
            _ = try await kafka.nativeServer()  // throws when serving ended instead (it failed, or stopped first)
            return kafka.url
        }
        if let redis = server as? RedisServerTransport {
            try await redis.waitUntilSubscribed()
            return redis.url
        }
        if let streams = server as? RedisStreamsServerTransport {
            try await streams.waitUntilReading()
            return streams.url
        }
        return server.name
    }

    private static func unsupported(_ url: TransportURL) -> CourierError {
        CourierError(
            .unprocessable,
            "unsupported transport '\(url.scheme)'; supported: \(supportedSchemes.joined(separator: ", "))"
        )
    }
}
