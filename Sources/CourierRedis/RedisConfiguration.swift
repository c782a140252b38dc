//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// Where a Redis connection goes and how it behaves: credentials, database, timeouts, reconnection.
public struct RedisConfiguration: Sendable, Hashable {
    /// How long to wait between reconnection attempts.
    ///
    /// After a connection is lost, the first attempt is immediate. After `n` consecutive failed attempts the next
    /// one waits `min(initialDelay × multiplierⁿ⁻¹, maximumDelay)`, plus up to `jitter` of that at random so that
    /// many clients do not reconnect in lockstep. Attempts never stop until the connection is closed.
    public struct ReconnectBackoff: Sendable, Hashable {
        /// The wait after the first failed attempt.
        ///
        /// Default: `.milliseconds(100)`
        public var initialDelay: Duration
        /// The longest wait between two attempts.
        ///
        /// Default: `.seconds(5)`
        public var maximumDelay: Duration
        /// What each further failed attempt multiplies the wait by; below 1 (or not a finite number) counts as 1.
        ///
        /// Default: `2`
        public var multiplier: Double
        /// The largest fraction of a wait added at random; 0 or less (or not a finite number) adds none.
        ///
        /// Default: `0.2`
        public var jitter: Double

        /// Creates a backoff policy; every parameter has the documented default.
        public init(
            initialDelay: Duration = .milliseconds(100),
            maximumDelay: Duration = .seconds(5),
            multiplier: Double = 2,
            jitter: Double = 0.2
        ) {
            self.initialDelay = initialDelay
            self.maximumDelay = maximumDelay
            self.multiplier = multiplier
            self.jitter = jitter
        }

        /// The wait before the next attempt after `failedAttempts` consecutive failures (at least 1), before
        /// jitter is added.
        public func delay(afterFailedAttempts failedAttempts: Int) -> Duration {
            let initial = initialDelay.seconds
            let maximum = maximumDelay.seconds
            var seconds = initial
            // Multiply step by step (exponents are small), stopping once the cap is reached.
            // A NaN or infinite factor would make the wait NaN, and `Duration` traps on that.
            let factor = multiplier.isFinite ? max(multiplier, 1) : 1
            for _ in 1..<max(failedAttempts, 1) where seconds < maximum {
                seconds *= factor
            }
            seconds = min(seconds, maximum)
            return .seconds(max(seconds, 0))
        }

        /// ``delay(afterFailedAttempts:)`` with a random share of up to ``jitter`` of it added.
        func jitteredDelay(afterFailedAttempts failedAttempts: Int) -> Duration {
            let base = delay(afterFailedAttempts: failedAttempts)
            // `Double.random(in: 0...jitter)` traps on an infinite bound.
            guard jitter > 0, jitter.isFinite else { return base }
            return base + .seconds(base.seconds * Double.random(in: 0...jitter))
        }
    }

    /// The server's host name or address.
    ///
    /// Default: `"127.0.0.1"`
    public var host: String
    /// The server's port.
    ///
    /// Default: `6379`
    public var port: Int
    /// The ACL user to authenticate as (`AUTH username password`); `nil` authenticates the `default` user with
    /// ``password`` alone (`AUTH password`, as for `requirepass`).
    ///
    /// Default: `nil`
    public var username: String?
    /// The password; `nil` sends no `AUTH`.
    ///
    /// Default: `nil`
    public var password: String?
    /// The database to `SELECT` after connecting (`0` sends no `SELECT`). Pub/sub ignores databases.
    ///
    /// Default: `0`
    public var database: Int
    /// How long establishing a connection may take: the TCP connect, and then the `AUTH`/`SELECT` handshake.
    ///
    /// Default: `.seconds(5)`
    public var connectTimeout: Duration
    /// How long a command may wait for its reply before it fails with ``CourierCore/CourierError/Code/timedOut``;
    /// `nil` waits as long as the connection lives.
    ///
    /// A timed-out command closes its connection (which then reconnects): replies are matched to commands in
    /// order, so a reply that never came would otherwise hold up every later one. Blocking commands
    /// (`BLPOP`, `XREADGROUP … BLOCK`) belong on a dedicated connection whose timeout exceeds their block time;
    /// ``RedisConnection/send(_:timeout:)`` overrides it per command.
    ///
    /// Default: `.seconds(10)`
    public var commandTimeout: Duration?
    /// How reconnection attempts are spaced after the connection is lost.
    ///
    /// Default: `ReconnectBackoff()` (100 ms doubling up to 5 s, 20 % jitter)
    public var reconnectBackoff: ReconnectBackoff
    /// How many pub/sub messages a ``RedisSubscriber`` buffers before it stops reading from the socket; it reads
    /// again once a quarter of that remains. While it does not read, Redis buffers for it, up to its
    /// `client-output-buffer-limit pubsub` (then Redis drops the connection, and the subscriber reconnects).
    ///
    /// Default: `1024`
    public var subscriberBufferSize: Int

    /// Creates a configuration; every parameter has the documented default.
    public init(
        host: String = "127.0.0.1",
        port: Int = 6379,
        username: String? = nil,
        password: String? = nil,
        database: Int = 0,
        connectTimeout: Duration = .seconds(5),
        commandTimeout: Duration? = .seconds(10),
        reconnectBackoff: ReconnectBackoff = ReconnectBackoff(),
        subscriberBufferSize: Int = 1024
    ) {
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.database = database
        self.connectTimeout = connectTimeout
        self.commandTimeout = commandTimeout
        self.reconnectBackoff = reconnectBackoff
        self.subscriberBufferSize = subscriberBufferSize
    }

    /// A configuration from a URL of the form `redis://[[user]:password@]host[:port][/database]`; every setting
    /// the URL does not name has its default.
    ///
    /// `redis://:secret@cache:6380/2` authenticates the default user with `secret` and selects database 2;
    /// `redis://alice:secret@cache` authenticates the ACL user `alice`. Percent-escapes in the user and password
    /// are decoded.
    ///
    /// - Throws: ``CourierCore/CourierError`` with code `unprocessable` if the URL is malformed, its scheme is not
    ///   `redis`, it names several hosts, a user without a password, or a database that is not a non-negative
    ///   integer.
    public init(url: String) throws {
        try self.init(url: TransportURL(url))
    }

    /// A configuration from a parsed ``CourierCore/TransportURL``; see ``init(url:)-(String)``.
    public init(url: TransportURL) throws {
        func fail(_ why: String) -> CourierError {
            CourierError(.unprocessable, "invalid Redis URL '\(url)': \(why)")
        }
        guard url.scheme == "redis" else { throw fail("the scheme must be redis") }
        guard url.endpoints.count == 1 else { throw fail("Redis takes one host") }
        guard url.user == nil || url.password != nil else {
            throw fail("a user needs a password (write redis://:password@host for the default user)")
        }
        var database = 0
        if !url.path.isEmpty {
            guard let number = Int(url.path), number >= 0 else {
                throw fail("the path must be a database number, not '\(url.path)'")
            }
            database = number
        }
        self.init(
            host: url.host,
            port: url.port(default: 6379),
            username: url.user,
            password: url.password,
            database: database
        )
    }

    /// `redis://host:port/database`, for messages (never the password).
    var endpointDescription: String {
        let host = host.contains(":") ? "[\(host)]" : host
        return database == 0 ? "redis://\(host):\(port)" : "redis://\(host):\(port)/\(database)"
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number.
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
