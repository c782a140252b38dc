//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// Settings shared by the TCP server and client.
public struct TCPConfiguration: Sendable {
    /// The host to listen on (server) or connect to (client).
    ///
    /// Default: `"127.0.0.1"`
    public var host: String

    /// The port to listen on (server; `0` picks a free one) or connect to (client).
    ///
    /// Default: `3000` (NestJS's default)
    public var port: Int

    /// The largest frame accepted, in UTF-16 code units of its JSON text (what its length prefix counts). A
    /// larger frame closes the connection; a larger outgoing message fails with
    /// ``CourierError/Code/payloadTooLarge``.
    ///
    /// Default: `16 * 1024 * 1024`
    public var maxFrameLength: Int

    /// How long a frame may stay half-received before the connection is closed; `nil` waits forever. The clock
    /// does not close a worker's connection while the worker itself holds reads back (all its handler slots busy).
    ///
    /// Default: `.seconds(30)` (NestJS's `incompleteMessageTimeout`)
    public var incompleteFrameTimeout: Duration?

    /// How long a worker's stream reply may wait for its write before the connection is closed; `nil` waits
    /// forever.
    ///
    /// A streaming handler's `replies.send` waits for its element to be written every 64 elements, and whenever the
    /// connection's outbound buffer is full. A peer that stops reading holds it there: its handler slot, its
    /// connection and, with no timeout, the caller's deadline passing changes nothing (a NestJS caller announces
    /// none). Once a write has waited this long, the worker closes the connection: the handler's `replies.send`
    /// fails with ``CourierError/Code/transportUnavailable``, and the peer's calls on the connection fail.
    ///
    /// Default: `.seconds(30)` (as ``incompleteFrameTimeout``, for a peer that stops sending)
    public var stalledWriteTimeout: Duration? = .seconds(30)

    /// How long a client waits for a connection to be established.
    ///
    /// Default: `.seconds(10)`
    public var connectTimeout: Duration

    /// Whether a server connection's handlers run on that connection's event loop (through a task executor)
    /// instead of Swift's global concurrent executor.
    ///
    /// On the event loop, reading a request, running its handler and writing the reply need no thread hand-offs,
    /// which roughly doubles small-RPC throughput. Each handler starts at once on the thread that read its message
    /// (an immediate child task) and runs there until it first suspends or returns; handlers still run
    /// concurrently. But a handler that computes for long (or blocks) delays every connection on that event loop.
    /// Turn it off for CPU-heavy handlers (they are then enqueued on the global executor, in parallel with the
    /// reader), or move heavy work off with `Task.detached`.
    ///
    /// Default: `true`
    public var runsHandlersOnEventLoop: Bool

    /// The bytes connections speak: NestJS's frames, or Ascender's JSON lines.
    ///
    /// Default: ``TCPWireFormat/nestJS``
    public var format: TCPWireFormat = .nestJS

    /// Whether a client's `emit` returns only once its event is written to the socket.
    ///
    /// When `false`, `emit` returns as soon as the event is queued on the connection, as NestJS's `ClientTCP` does,
    /// so events pipeline without a wait each. An event queued that way is lost if the connection closes before it
    /// is written, and the caller is not told (those still queued in Courier then are logged, once per write
    /// batch). Either way, while ``maxUnwrittenEvents`` events wait to be handed to the connection, or its outbound
    /// buffer is above NIO's high-water mark (the channel is not writable), `emit` waits until its own event is
    /// written: that bounds what a fast emitter queues in memory. Calls (`send`) never wait for their writes.
    ///
    /// Default: `true`
    public var awaitsEventAcknowledgement: Bool = true

    /// With ``awaitsEventAcknowledgement`` off, how many events may wait to be handed to the connection before
    /// `emit` waits. Values below 1 count as 1.
    ///
    /// Default: `4096`
    public var maxUnwrittenEvents: Int = 4096

    /// Creates a configuration; every parameter has the documented default.
    public init(
        host: String = "127.0.0.1",
        port: Int = 3000,
        maxFrameLength: Int = 16 * 1024 * 1024,
        incompleteFrameTimeout: Duration? = .seconds(30),
        connectTimeout: Duration = .seconds(10),
        runsHandlersOnEventLoop: Bool = true
    ) {
        self.host = host
        self.port = port
        self.maxFrameLength = maxFrameLength
        self.incompleteFrameTimeout = incompleteFrameTimeout
        self.connectTimeout = connectTimeout
        self.runsHandlersOnEventLoop = runsHandlersOnEventLoop
    }

    /// The query options a `tcp://` URL may have.
    static let urlOptions: Set<String> = [
        "maxFrameLength", "incompleteFrameTimeoutMs", "connectTimeoutMs", "handlersOnEventLoop", "format",
        "eventAcks", "maxUnwrittenEvents", "stalledWriteTimeoutMs",
    ]

    /// The `true`/`false` option `name` of `url`, if given.
    private static func flag(_ name: String, in url: TransportURL) throws -> Bool? {
        guard let value = url.options[name] else { return nil }
        guard let flag = Bool(value) else {
            throw CourierError(.unprocessable, "\(name) must be true or false, got '\(value)'")
        }
        return flag
    }

    /// The milliseconds option `name` of `url`, if given: `.some(nil)` for `0` (no timeout).
    private static func optionalTimeout(_ name: String, in url: TransportURL) throws -> Duration?? {
        guard let value = url.options[name] else { return nil }
        guard let ms = Int64(value), ms >= 0 else {
            throw CourierError(.unprocessable, "\(name) must be a non-negative integer")
        }
        return .some(ms == 0 ? nil : .milliseconds(ms))
    }

    /// Reads a `tcp://host:port` URL. Query options: `maxFrameLength` (characters), `incompleteFrameTimeoutMs`,
    /// `stalledWriteTimeoutMs` (both `0` for none), `connectTimeoutMs`, `handlersOnEventLoop` (`true`/`false`),
    /// `format` (`nestjs` or `ascender`), `eventAcks` (`true`/`false`, ``awaitsEventAcknowledgement``),
    /// `maxUnwrittenEvents`; any other option is an error (a misspelt one would otherwise do nothing).
    public init(url: TransportURL) throws {
        guard url.scheme == "tcp" else {
            throw CourierError(.unprocessable, "not a TCP URL: \(url)")
        }
        if let unknown = url.options.keys.sorted().first(where: { !Self.urlOptions.contains($0) }) {
            throw CourierError(.unprocessable, "unknown TCP URL option '\(unknown)'")
        }
        // Like an unknown option, a part TCP has no use for would otherwise be dropped without a word.
        guard url.endpoints.count == 1 else { throw CourierError(.unprocessable, "a TCP URL takes one host: \(url)") }
        guard url.user == nil, url.password == nil else {
            throw CourierError(.unprocessable, "a TCP URL takes no user or password: \(url)")
        }
        guard url.path.isEmpty else { throw CourierError(.unprocessable, "a TCP URL takes no path: \(url)") }
        self.init(host: url.host, port: url.port(default: 3000))
        if let value = url.options["maxFrameLength"] {
            guard let limit = Int(value), limit > 0 else {
                throw CourierError(.unprocessable, "maxFrameLength must be a positive integer, got '\(value)'")
            }
            maxFrameLength = limit
        }
        if let timeout = try Self.optionalTimeout("incompleteFrameTimeoutMs", in: url) { incompleteFrameTimeout = timeout }
        if let timeout = try Self.optionalTimeout("stalledWriteTimeoutMs", in: url) { stalledWriteTimeout = timeout }
        if let value = url.options["connectTimeoutMs"] {
            guard let ms = Int64(value), ms > 0 else {
                throw CourierError(.unprocessable, "connectTimeoutMs must be a positive integer")
            }
            connectTimeout = .milliseconds(ms)
        }
        if let flag = try Self.flag("handlersOnEventLoop", in: url) { runsHandlersOnEventLoop = flag }
        if let value = url.options["format"] {
            guard let format = TCPWireFormat(name: value) else {
                throw CourierError(.unprocessable, "format must be nestjs or ascender, got '\(value)'")
            }
            self.format = format
        }
        if let flag = try Self.flag("eventAcks", in: url) { awaitsEventAcknowledgement = flag }
        if let value = url.options["maxUnwrittenEvents"] {
            guard let count = Int(value), count >= 1 else {
                throw CourierError(.unprocessable, "maxUnwrittenEvents must be a positive integer, got '\(value)'")
            }
            maxUnwrittenEvents = count
        }
    }
}

extension Duration {
    /// Saturating: a timeout too long for `TimeAmount` waits as long as it can instead of wrapping to a negative one.
    var timeAmount: TimeAmount { .nanoseconds(nanosecondCount) }
}
