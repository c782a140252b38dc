//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// The worker side of the Redis Streams transport: durable, load-balanced work.
///
/// Requests and events are entries of one stream per pattern (``RedisStreamsConfiguration/stream(for:)``). Workers
/// of one service read them through their consumer group (``RedisStreamsConfiguration/group``), each instance under
/// its own consumer name, so every entry goes to one instance. Delivery is **at least once**:
/// - an entry is acknowledged (`XACK`) only after its handler finished and, for a request, its reply was published;
/// - entries a worker took but never acknowledged (it died, or an event handler threw) are claimed by a live
///   worker once idle for ``RedisStreamsConfiguration/claimIdleTime``; a live worker renews its claim of the entries
///   it holds every third of that time, so a handler may run longer than it;
/// - an entry delivered ``RedisStreamsConfiguration/maxDeliveries`` times goes, with its last error, to the
///   dead-letter stream `<stream>.dlq` and is acknowledged.
///
/// A request whose caller's deadline passed before a worker took it is acknowledged without being handled. A
/// wildcard route (`orders.*`) serves the streams whose names match it, found with `SCAN … TYPE stream` at start and
/// then every ``RedisStreamsConfiguration/claimInterval`` (so the first entry of a new stream can wait that long).
/// Replies go to the caller's pub/sub channel, named in the entry. The group is created (`XGROUP CREATE … 0 MKSTREAM`) if missing, so entries added before the first
/// worker started are handled.
///
/// `nativeServer()` returns the `RedisConnection` the worker runs its commands on.
public final class RedisStreamsServerTransport: ServerTransport {
    public var name: String { "redis-streams" }

    private let configuration: RedisStreamsConfiguration
    private let logger: Logger
    private let commands = Mutex<RedisConnection?>(nil)
    private let ready = OneShot<Result<Void, CourierError>>()
    /// The entries this worker holds, whose claims it renews while their handlers run.
    private let leases = RedisStreamsLeases()
    /// This machine's wall clock, in milliseconds since 1970 (replaceable in tests).
    private let wallClock: @Sendable () -> Int64
    /// Redis's clock minus ``wallClock``, in milliseconds: entry ids carry Redis's time, so a request's age is
    /// judged on Redis's clock. Measured with `TIME` at start and every claim interval.
    private let clockOffset = Atomic<Int64>(0)

    /// Creates a worker transport.
    ///
    /// - Parameters:
    ///   - configuration: The server, group, consumer name and delivery settings.
    ///   - logger: Where connection problems and dead letters go. Default: a logger labelled
    ///     `courier.redis.streams`.
    public init(configuration: RedisStreamsConfiguration, logger: Logger = Logger(label: "courier.redis.streams")) {
        self.configuration = configuration
        self.logger = logger
        self.wallClock = { Self.nowMilliseconds() }
    }

    /// A worker transport whose wall clock is `wallClock` (tests give it a skewed clock).
    init(configuration: RedisStreamsConfiguration, logger: Logger, wallClock: @escaping @Sendable () -> Int64) {
        self.configuration = configuration
        self.logger = logger
        self.wallClock = wallClock
    }

    /// The server as a URL, for messages: `redis+streams://host:port[/db]?group=…` (never the password).
    public var url: String {
        "redis+streams" + configuration.connection.endpointDescription.dropFirst("redis".count)
            + "?group=\(configuration.group)"
    }

    /// Returns once the worker's groups exist and it reads its streams.
    ///
    /// - Throws: The error that stopped the worker from starting.
    public func waitUntilReading() async throws {
        try await ready.value.get()
    }

    public func nativeServer() async throws -> any Sendable {
        guard let connection = commands.withLock({ $0 }) else {
            throw CourierError.unavailable("the Redis Streams worker is not serving")
        }
        return connection
    }

    public func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
        let exact = patterns.filter { !$0.isWildcard }.map { configuration.stream(for: $0.text) }
        let wildcards = patterns.filter(\.isWildcard)
        let commands: RedisConnection
        let reader: RedisConnection
        var streams: [String]
        do {
            commands = try await RedisConnection.connect(configuration: configuration.connection, logger: logger)
            // The reader blocks in XREADGROUP, so it gets a connection of its own, with room for the block time.
            var readerSettings = configuration.connection
            readerSettings.commandTimeout = configuration.blockTime
                + (configuration.connection.commandTimeout ?? .seconds(10))
            do {
                reader = try await RedisConnection.connect(configuration: readerSettings, logger: logger)
                for stream in exact { try await createGroup(on: stream, with: commands) }
                streams = exact
                streams += try await discoverStreams(matching: wildcards, known: streams, with: commands)
            } catch {
                await commands.close()
                throw error
            }
        } catch {
            let failure = CourierError.wrapping(error, as: .transportUnavailable, "the Redis Streams worker cannot start")
            ready.deliver(.failure(failure))
            throw failure
        }
        self.commands.withLock { $0 = commands }
        ready.deliver(.success(()))
        logger.info("redis streams worker reading", metadata: ["streams": "\(streams)",
                                                             "group": "\(configuration.group)",
                                                             "consumer": "\(configuration.consumer)"])
        let acknowledger = RedisStreamsAcknowledger(commands: commands, configuration: configuration, logger: logger)
        await withDiscardingTaskGroup { outer in
            // In a task of its own, which cancelling the worker does not reach: after a graceful shutdown the
            // worker is cancelled as soon as its handlers are done, and their acknowledgements must still be sent
            // (each command is bounded by `commandTimeout`).
            outer.addTask { await Task { await acknowledger.run() }.value }
            let stopping = Atomic(false)
            let renewer = Task { [leases, configuration, logger] in
                let interval = RedisStreamsLeases.interval(for: configuration)
                while !Task.isCancelled {
                    try? await Task.sleep(for: interval)
                    if Task.isCancelled { break }
                    await leases.renew(with: commands, configuration: configuration, logger: logger)
                }
            }
            let watcher = Task {
                // Draining: stop reading at once; entries read but not handled stay pending and are claimed later.
                await dispatcher.draining()
                stopping.store(true, ordering: .relaxed)
                await reader.close()
            }
            await withDiscardingTaskGroup { handlers in
                await readLoop(streams: streams, wildcards: wildcards, reader: reader, commands: commands,
                               acknowledger: acknowledger, dispatcher: dispatcher, stopping: stopping,
                               handlers: &handlers)
            }
            watcher.cancel()
            renewer.cancel()
            acknowledger.finish()  // every handler has reported: flush the last acknowledgements
        }
        self.commands.withLock { $0 = nil }
        await reader.close()
        await commands.close()
    }

    // MARK: Reading

    private func readLoop(
        streams initialStreams: [String],
        wildcards: [RoutePattern],
        reader: RedisConnection,
        commands: RedisConnection,
        acknowledger: RedisStreamsAcknowledger,
        dispatcher: any InboundDispatcher,
        stopping: borrowing Atomic<Bool>,
        handlers: inout DiscardingTaskGroup
    ) async {
        var streams = initialStreams
        let group: [RESPArgument] = ["XREADGROUP", "GROUP", RESPArgument(configuration.group),
                                     RESPArgument(configuration.consumer), "COUNT"]
        let block: [RESPArgument] = ["BLOCK", RESPArgument(Int(configuration.blockTime.milliseconds)), "STREAMS"]
        let clock = ContinuousClock()
        var nextClaim = clock.now
        var failures = 0
        while !Task.isCancelled, !stopping.load(ordering: .relaxed) {
            do {
                if clock.now >= nextClaim {
                    nextClaim = clock.now + configuration.claimInterval
                    try await measureClockOffset(with: commands)
                    streams += try await discoverStreams(matching: wildcards, known: streams, with: commands)
                    for stream in streams {
                        let claimed = try await claimIdleEntries(of: stream, with: commands)
                        // Held (renewed) from now, not only once dispatched: the later ones wait here for the
                        // earlier ones' handler slots, and would otherwise look idle to other workers.
                        for (entry, _) in claimed { leases.hold(entry.id, of: entry.stream) }
                        for (entry, deliveries) in claimed {
                            await dispatch(entry, deliveries: deliveries, acknowledger: acknowledger,
                                           commands: commands, dispatcher: dispatcher, handlers: &handlers)
                        }
                    }
                }
                guard !streams.isEmpty else {
                    // Only wildcard routes, and no stream matches them yet.
                    try await Task.sleep(for: configuration.claimInterval)
                    continue
                }
                // No more entries per stream than handlers can take now (at least one, which then waits for the
                // next free slot): an entry waiting here for a slot ages as pending, and another worker would claim
                // it once it looked idle for `claimIdleTime`, and handle it a second time.
                let free = dispatcher.availableHandlerSlots ?? configuration.readCount
                let count = RESPArgument(min(configuration.readCount, max(1, free)))
                let read = group + [count] + block + streams.map { RESPArgument($0) } + streams.map { _ in ">" }
                let entries = try RedisStreamEntry.entries(fromRead: try await reader.send(read))
                failures = 0
                // Up to `count` entries per stream: held (renewed) while they wait here for a handler slot.
                for entry in entries { leases.hold(entry.id, of: entry.stream) }
                for entry in entries {
                    await dispatch(entry, deliveries: 1, acknowledger: acknowledger, commands: commands,
                                   dispatcher: dispatcher, handlers: &handlers)
                }
            } catch let error as RedisError where error.kind == "NOGROUP" {
                // The stream or group was deleted under us: create it again.
                for stream in streams { try? await createGroup(on: stream, with: commands) }
            } catch {
                if stopping.load(ordering: .relaxed) { return }
                failures += 1
                logger.warning("reading streams failed; retrying", metadata: ["error": "\(error)"])
                let delay = configuration.connection.reconnectBackoff.delay(afterFailedAttempts: failures)
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// Hands `entry` to the dispatcher, or acknowledges or dead-letters it when it is not to be handled. The caller
    /// holds its lease (renewed while it waits for a handler slot); this releases it once the entry is done.
    private func dispatch(
        _ entry: RedisStreamEntry,
        deliveries: Int,
        acknowledger: RedisStreamsAcknowledger,
        commands: RedisConnection,
        dispatcher: any InboundDispatcher,
        handlers: inout DiscardingTaskGroup
    ) async {
        let metadata = TransportMetadata(
            transport: "redis-streams",
            channel: entry.stream,
            offset: entry.id,
            timestampMilliseconds: entry.addedAtMilliseconds
        )
        guard let packet = entry.field(RedisStreamEntry.packetField),
            case .request(var request) = try? NestJSEnvelope.decode(packet)
        else {
            leases.release(entry.id, of: entry.stream)
            dispatcher.reportBadInput("a stream entry without a Courier packet", metadata: metadata)
            acknowledger.deadLetter(entry, error: "not a Courier entry (no valid 'packet' field)", deliveries: deliveries)
            return
        }
        request.pattern = String(entry.stream.dropFirst(configuration.streamPrefix.count))
        let replyTo = entry.field(RedisStreamEntry.replyToField).map { String(buffer: $0) }
        if deliveries == 1, request.correlationID != nil, let timeout = request.timeout,
            let added = entry.addedAtMilliseconds,
            wallClock() + clockOffset.load(ordering: .relaxed) - added > timeout.milliseconds
        {
            // Its caller gave up before any worker took it. Not for a claimed entry: a worker took it, and its
            // handler may have extended the caller's deadline, so it is handled again (at least once).
            leases.release(entry.id, of: entry.stream)
            logger.debug("skipping an expired request", metadata: ["stream": "\(entry.stream)", "id": "\(entry.id)"])
            acknowledger.acknowledge(entry)
            return
        }
        let writer = replyTo.map { RedisReplyPublisher(connection: commands, destination: .caller(channel: $0)) }
        let maxDeliveries = configuration.maxDeliveries
        let isEvent = request.isEvent
        // Held by the caller since it read or claimed the entry (see `readLoop`); released once handled.
        let leases = self.leases
        let message = InboundMessage(
            request: request,
            metadata: metadata,
            replyWriter: request.isEvent ? nil : writer,
            onHandled: { outcome in
                leases.release(entry.id, of: entry.stream)
                if outcome.isFailure, isEvent {
                    // Left pending, it comes back after the claim idle time, up to maxDeliveries times.
                    if deliveries >= maxDeliveries {
                        acknowledger.deadLetter(entry, error: outcome.error.map { "\($0)" } ?? "failed",
                                                deliveries: deliveries)
                    }
                } else if outcome.shouldAcknowledge {
                    acknowledger.acknowledge(entry)
                }
            }
        )
        await dispatcher.dispatch(message, in: &handlers)
    }

    /// Claims this stream's entries idle for longer than the claim idle time; those already delivered
    /// `maxDeliveries` times go to the dead-letter stream instead. Returns the entries to handle with their
    /// delivery count.
    private func claimIdleEntries(of stream: String, with commands: RedisConnection) async throws
        -> [(RedisStreamEntry, Int)]
    {
        let idle = RESPArgument(Int(configuration.claimIdleTime.milliseconds))
        let pending = try await commands.send(["XPENDING", RESPArgument(stream), RESPArgument(configuration.group),
                                               "IDLE", idle, "-", "+", RESPArgument(configuration.readCount)])
        var counts: [String: Int] = [:]
        for item in pending.array ?? [] {
            guard let fields = item.array, fields.count == 4, let id = fields[0].string, let count = fields[3].int
            else { continue }
            counts[id] = count
        }
        guard !counts.isEmpty else { return [] }
        let claimed = try await commands.send(
            ["XCLAIM", RESPArgument(stream), RESPArgument(configuration.group), RESPArgument(configuration.consumer),
             idle] + counts.keys.sorted().map { RESPArgument($0) }
        )
        let entries = try RedisStreamEntry.entries(in: stream, list: claimed)
        try await forgetDeletedEntries(counts.keys.filter { id in !entries.contains { $0.id == id } }, of: stream,
                                       with: commands)
        var work: [(RedisStreamEntry, Int)] = []
        for entry in entries {
            let deliveries = (counts[entry.id] ?? 0) + 1
            if deliveries > configuration.maxDeliveries {
                try await RedisStreamsAcknowledger.moveToDeadLetters(
                    entry,
                    error: "delivered \(deliveries - 1) times without being acknowledged",
                    deliveries: deliveries - 1,
                    commands: commands,
                    configuration: configuration
                )
                logger.warning("dead-lettered an entry no worker finished",
                               metadata: ["stream": "\(stream)", "id": "\(entry.id)"])
            } else {
                work.append((entry, deliveries))
            }
        }
        return work
    }

    /// Acknowledges those of `ids` (pending entries the claim did not return) that are no longer in the stream.
    ///
    /// An entry deleted after it was read (XDEL, MAXLEN trimming) has nothing left to handle. Redis 7 drops such
    /// entries from the pending list as it claims them; before 7, XCLAIM answers nil for them and they stay pending
    /// for good, filling the XPENDING window so that the idle entries after them are never claimed. An id the claim
    /// skipped because another worker claimed it meanwhile is still in the stream, and is left alone.
    private func forgetDeletedEntries(_ ids: [String], of stream: String, with commands: RedisConnection) async throws {
        var deleted: [RESPArgument] = []
        for id in ids.sorted() {
            let range = try await commands.send(["XRANGE", RESPArgument(stream), RESPArgument(id), RESPArgument(id)])
            if range.array?.isEmpty == true { deleted.append(RESPArgument(id)) }
        }
        guard !deleted.isEmpty else { return }
        _ = try await commands.send(["XACK", RESPArgument(stream), RESPArgument(configuration.group)] + deleted)
        logger.debug("acknowledged pending entries deleted from their stream",
                     metadata: ["stream": "\(stream)", "count": "\(deleted.count)"])
    }

    /// The streams not yet in `known` whose names match a wildcard route, with the group created on each.
    private func discoverStreams(
        matching wildcards: [RoutePattern],
        known: [String],
        with commands: RedisConnection
    ) async throws -> [String] {
        guard !wildcards.isEmpty else { return [] }
        var found: [String] = []
        for route in wildcards {
            let glob = configuration.streamPrefix + RedisServerTransport.glob(for: route)
            var cursor = "0"
            repeat {
                let reply = try await commands.send(["SCAN", RESPArgument(cursor), "MATCH", RESPArgument(glob),
                                                     "COUNT", "1000", "TYPE", "stream"])
                guard let parts = reply.array, parts.count == 2, let next = parts[0].string else { break }
                cursor = next
                for key in parts[1].array ?? [] {
                    guard let name = key.string, !known.contains(name), !found.contains(name),
                        !name.hasSuffix(configuration.deadLetterSuffix),
                        route.matches(String(name.dropFirst(configuration.streamPrefix.count)))
                    else { continue }
                    try await createGroup(on: name, with: commands)
                    found.append(name)
                }
            } while cursor != "0"
        }
        return found
    }

    private func createGroup(on stream: String, with commands: RedisConnection) async throws {
        do {
            _ = try await commands.send(["XGROUP", "CREATE", RESPArgument(stream), RESPArgument(configuration.group),
                                         "0", "MKSTREAM"])
        } catch let error as RedisError where error.kind == "BUSYGROUP" {
            // It exists: fine.
        }
    }

    /// Measures Redis's clock against this worker's (``clockOffset``), from the middle of a `TIME` round trip.
    private func measureClockOffset(with commands: RedisConnection) async throws {
        let before = wallClock()
        let reply = try await commands.send(["TIME"])
        let after = wallClock()
        guard let parts = reply.array, parts.count == 2,
            let seconds = parts[0].string.flatMap({ Int64($0) }), let microseconds = parts[1].string.flatMap({ Int64($0) })
        else { return }
        clockOffset.store(seconds * 1_000 + microseconds / 1_000 - (before + after) / 2, ordering: .relaxed)
    }

    /// Wall-clock milliseconds.
    static func nowMilliseconds() -> Int64 {
        Int64(Date().timeIntervalSince1970 * 1000)
    }
}
