//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// Settings of the Redis pub/sub transport (``RedisServerTransport``, ``RedisClientTransport``).
public struct RedisPubSubConfiguration: Sendable {
    /// How to reach Redis: host, credentials, database, timeouts, reconnection.
    public var connection: RedisConfiguration

    /// The messages and channels: NestJS's (the default) or Ascender's.
    ///
    /// Default: ``RedisWireFormat/nestJS``
    public var format: RedisWireFormat

    /// Whether a call fails at once when its `PUBLISH` reached no subscriber (no worker serves the pattern), with
    /// ``CourierCore/CourierError/Code/transportUnavailable``, instead of waiting for its timeout. Turn it off only
    /// if workers may subscribe after the request was published (pub/sub never delivers it to them).
    ///
    /// Default: `true`
    public var failsCallsWithoutSubscribers: Bool

    /// Whether a worker runs its handlers on the event loop of its Redis connections instead of Swift's global
    /// concurrent executor (as ``CourierTCP``'s option of the same name does).
    ///
    /// On the event loop, receiving a request, running its handler and publishing the reply need no thread
    /// hand-offs. Each handler starts at once on the thread that read its message (an immediate child task) and
    /// runs there until it first suspends or returns; handlers still run concurrently. But a handler that computes
    /// for long (or blocks) delays the worker's Redis traffic. Turn it off for CPU-heavy handlers, or move heavy
    /// work off with `Task.detached`.
    ///
    /// Default: `true`
    public var runsHandlersOnEventLoop: Bool

    /// Whether a client's `emit` returns only once Redis answered its `PUBLISH`, as NestJS's `ClientRedis` does.
    /// When `false`, `emit` returns as soon as the `PUBLISH` is queued on the connection, so events pipeline
    /// without a wait each; a `PUBLISH` that then fails is only logged. Either way, while
    /// ``maxUnacknowledgedEvents`` events are unanswered, `emit` waits for its own answer.
    ///
    /// Default: `true`
    public var awaitsEventAcknowledgement: Bool

    /// With ``awaitsEventAcknowledgement`` off, how many events may be unanswered before `emit` waits, which bounds
    /// what a fast emitter queues in memory.
    ///
    /// Default: 4096
    public var maxUnacknowledgedEvents: Int

    /// How many reply channels a client keeps subscribed before it lets idle ones go.
    ///
    /// A client subscribes to a pattern's reply channel (`<pattern>.reply`) on its first call to that pattern and
    /// keeps it, so later calls skip the `SUBSCRIBE` round trip. NestJS's `ClientRedis` instead unsubscribes after
    /// each pattern's last pending call. Once this many are subscribed, subscribing another first unsubscribes every
    /// reply channel that no call can still be waiting on: every call sent on it is past its deadline, counting the
    /// extensions its handler sent. So a client that calls an unbounded number of distinct patterns (say, one per
    /// order id) holds a bounded number of subscriptions. A channel with a call still pending is never let go, so
    /// the count can pass this limit while more channels than that are busy. The client looks for idle channels at
    /// most once a second. Ascender's fixed reply channels are never let go.
    ///
    /// Default: 1000
    public var maxReplyChannels: Int

    /// Creates a configuration; every parameter but the connection has the documented default.
    public init(
        connection: RedisConfiguration = RedisConfiguration(),
        format: RedisWireFormat = .nestJS,
        failsCallsWithoutSubscribers: Bool = true,
        runsHandlersOnEventLoop: Bool = true,
        awaitsEventAcknowledgement: Bool = true,
        maxUnacknowledgedEvents: Int = 4096,
        maxReplyChannels: Int = 1000
    ) {
        precondition(maxUnacknowledgedEvents >= 1, "maxUnacknowledgedEvents must be at least 1")
        precondition(maxReplyChannels >= 1, "maxReplyChannels must be at least 1")
        self.connection = connection
        self.format = format
        self.failsCallsWithoutSubscribers = failsCallsWithoutSubscribers
        self.runsHandlersOnEventLoop = runsHandlersOnEventLoop
        self.awaitsEventAcknowledgement = awaitsEventAcknowledgement
        self.maxUnacknowledgedEvents = maxUnacknowledgedEvents
        self.maxReplyChannels = maxReplyChannels
    }

    /// Reads `redis://[[user]:password@]host[:port][/database]` (see ``RedisConfiguration/init(url:)-(TransportURL)``).
    /// Query options: `format` (`nestjs` or `ascender`), `failFast` (`true`/`false`,
    /// ``failsCallsWithoutSubscribers``), `handlersOnEventLoop` (`true`/`false`, ``runsHandlersOnEventLoop``),
    /// `eventAcks` (`true`/`false`, ``awaitsEventAcknowledgement``), `maxUnacknowledgedEvents`, `maxReplyChannels`,
    /// `commandTimeoutMs`, `connectTimeoutMs`.
    public init(url: TransportURL) throws {
        var connection = try RedisConfiguration(url: url)
        var configuration = RedisPubSubConfiguration()
        for (key, value) in url.options {
            switch key {
            case "format":
                guard let format = RedisWireFormat(name: value) else {
                    throw CourierError(.unprocessable, "format must be nestjs or ascender, got '\(value)'")
                }
                configuration.format = format
            case "failFast", "handlersOnEventLoop", "eventAcks":
                guard let flag = Bool(value) else {
                    throw CourierError(.unprocessable, "\(key) must be true or false, got '\(value)'")
                }
                switch key {
                case "failFast": configuration.failsCallsWithoutSubscribers = flag
                case "eventAcks": configuration.awaitsEventAcknowledgement = flag
                default: configuration.runsHandlersOnEventLoop = flag
                }
            case "maxUnacknowledgedEvents", "maxReplyChannels":
                guard let count = Int(value), count >= 1 else {
                    throw CourierError(.unprocessable, "\(key) must be at least 1, got '\(value)'")
                }
                if key == "maxReplyChannels" {
                    configuration.maxReplyChannels = count
                } else {
                    configuration.maxUnacknowledgedEvents = count
                }
            case "commandTimeoutMs", "connectTimeoutMs":
                guard let ms = Int64(value), ms > 0 else {
                    throw CourierError(.unprocessable, "\(key) must be a positive integer, got '\(value)'")
                }
                if key == "commandTimeoutMs" {
                    connection.commandTimeout = .milliseconds(ms)
                } else {
                    connection.connectTimeout = .milliseconds(ms)
                }
            default:
                throw CourierError(.unprocessable, "unknown Redis URL option '\(key)'")
            }
        }
        configuration.connection = connection
        self = configuration
    }
}
