//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Foundation

/// Settings of the Redis Streams transport (``RedisStreamsServerTransport``, ``RedisStreamsClientTransport``).
public struct RedisStreamsConfiguration: Sendable {
    /// How to reach Redis: host, credentials, database, timeouts, reconnection.
    public var connection: RedisConfiguration

    /// The consumer group of a worker. Instances of one service share it, so each entry is handled by one of them;
    /// different services reading the same streams use different groups (each group gets every entry).
    ///
    /// Default: `"courier-workers"`
    public var group: String

    /// This worker instance's consumer name within the group; it must differ between instances running at once.
    ///
    /// Default: `<host>-<pid>-<random>`
    public var consumer: String

    /// Prepended to a pattern to name its stream (`orders.create` → `<prefix>orders.create`).
    ///
    /// Default: `""` (the stream is named like the pattern)
    public var streamPrefix: String

    /// If set, every `XADD` trims its stream to about this many entries (`MAXLEN ~`), entries that no group has
    /// read included: size it well above the backlog workers may have.
    ///
    /// Default: `nil` (no trimming)
    public var maxLength: Int?

    /// The most entries a worker asks for per stream and `XREADGROUP`; it asks for fewer when fewer handler slots
    /// are free (at least one), so that no entry waits long in it for a slot.
    ///
    /// Default: `100`
    public var readCount: Int

    /// How long one `XREADGROUP … BLOCK` waits for new entries before it is issued again.
    ///
    /// Default: 2 seconds
    public var blockTime: Duration

    /// How long an entry may stay delivered but unacknowledged (its worker died, or its event handler failed)
    /// before another worker claims it (`XPENDING … IDLE`, then `XCLAIM`). A live worker renews its claim of the
    /// entries it holds every third of this time, so a handler may run longer; a worker that died loses its entries
    /// after it.
    ///
    /// Default: 30 seconds
    public var claimIdleTime: Duration

    /// How often a worker looks for entries to claim.
    ///
    /// Default: 5 seconds
    public var claimInterval: Duration

    /// How many deliveries an entry gets before it goes to the dead-letter stream (`<stream><deadLetterSuffix>`)
    /// with its error, and is acknowledged.
    ///
    /// Default: `5`
    public var maxDeliveries: Int

    /// The suffix of dead-letter streams.
    ///
    /// Default: `".dlq"`
    public var deadLetterSuffix: String

    /// Prepended to a client's id to name the pub/sub channel its replies come back on.
    ///
    /// Default: `"courier:reply:"`
    public var replyChannelPrefix: String

    /// Creates a configuration; every parameter has the documented default.
    public init(
        connection: RedisConfiguration = RedisConfiguration(),
        group: String = "courier-workers",
        consumer: String = RedisStreamsConfiguration.defaultConsumerName(),
        streamPrefix: String = "",
        maxLength: Int? = nil,
        readCount: Int = 100,
        blockTime: Duration = .seconds(2),
        claimIdleTime: Duration = .seconds(30),
        claimInterval: Duration = .seconds(5),
        maxDeliveries: Int = 5,
        deadLetterSuffix: String = ".dlq",
        replyChannelPrefix: String = "courier:reply:"
    ) {
        self.connection = connection
        self.group = group
        self.consumer = consumer
        self.streamPrefix = streamPrefix
        self.maxLength = maxLength
        self.readCount = readCount
        self.blockTime = blockTime
        self.claimIdleTime = claimIdleTime
        self.claimInterval = claimInterval
        self.maxDeliveries = maxDeliveries
        self.deadLetterSuffix = deadLetterSuffix
        self.replyChannelPrefix = replyChannelPrefix
    }

    /// Reads `redis+streams://[[user]:password@]host[:port][/database]`. Query options: `group`, `consumer`,
    /// `prefix` (``streamPrefix``), `maxLength`, `claimIdleMs`, `claimIntervalMs`, `maxDeliveries`, `blockMs`,
    /// `commandTimeoutMs`, `connectTimeoutMs`.
    public init(url: TransportURL) throws {
        guard url.scheme == "redis+streams" else {
            throw CourierError(.unprocessable, "not a Redis Streams URL (redis+streams://…): \(url)")
        }
        var redisURL = url
        redisURL.scheme = "redis"
        redisURL.options = [:]
        self.init(connection: try RedisConfiguration(url: redisURL))
        func count(_ key: String, _ value: String) throws -> Int {
            guard let number = Int(value), number > 0 else {
                throw CourierError(.unprocessable, "\(key) must be a positive integer, got '\(value)'")
            }
            return number
        }
        for (key, value) in url.options {
            switch key {
            case "group": group = value
            case "consumer": consumer = value
            case "prefix": streamPrefix = value
            case "maxLength": maxLength = try count(key, value)
            case "claimIdleMs": claimIdleTime = .milliseconds(try count(key, value))
            case "claimIntervalMs": claimInterval = .milliseconds(try count(key, value))
            case "maxDeliveries": maxDeliveries = try count(key, value)
            case "blockMs": blockTime = .milliseconds(try count(key, value))
            case "commandTimeoutMs": connection.commandTimeout = .milliseconds(try count(key, value))
            case "connectTimeoutMs": connection.connectTimeout = .milliseconds(try count(key, value))
            default: throw CourierError(.unprocessable, "unknown Redis Streams URL option '\(key)'")
            }
        }
    }

    /// `<host>-<pid>-<4 random hex digits>`: distinct for instances on one host, readable in `XINFO CONSUMERS`.
    public static func defaultConsumerName() -> String {
        let host = ProcessInfo.processInfo.hostName
        return "\(host)-\(ProcessInfo.processInfo.processIdentifier)-\(String(UInt16.random(in: 0...UInt16.max), radix: 16))"
    }

    /// The stream of a pattern.
    func stream(for pattern: String) -> String { streamPrefix + pattern }
}
