//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import Synchronization

/// The stream entries a worker holds (handlers running or waiting for a slot), whose claims it renews.
///
/// Another worker claims an entry once it has been idle (delivered, not acknowledged) for
/// ``RedisStreamsConfiguration/claimIdleTime``; without renewal a handler that runs longer than that would be
/// handled a second time while the first run goes on. A live worker therefore claims its own entries again every
/// third of that time (`XCLAIM … 0 <ids> JUSTID`: the idle time restarts and the delivery count stays), the way
/// BullMQ extends a running job's lock. A worker that dies stops renewing, and its entries are claimed as before.
final class RedisStreamsLeases: Sendable {
    private let held = Mutex<[String: Set<String>]>([:])

    /// The most ids one `XCLAIM` names.
    static let idsPerCommand = 500

    /// The worker took entry `id` of `stream`.
    func hold(_ id: String, of stream: String) {
        held.withLock { _ = $0[stream, default: []].insert(id) }
    }

    /// The worker is done with entry `id` of `stream` (acknowledged, left pending on purpose, or abandoned).
    func release(_ id: String, of stream: String) {
        held.withLock { held in
            held[stream]?.remove(id)
            if held[stream]?.isEmpty == true { held[stream] = nil }
        }
    }

    /// The entries held now, by stream.
    var snapshot: [String: [String]] {
        held.withLock { $0.mapValues { Array($0) } }
    }

    /// Restarts the idle time of every entry held now. Failures are logged: the next renewal tries again, and an
    /// entry claimed meanwhile by another worker is handled there too (at least once).
    func renew(with commands: RedisConnection, configuration: RedisStreamsConfiguration, logger: Logger) async {
        for (stream, ids) in snapshot {
            var start = 0
            while start < ids.count {
                let chunk = ids[start..<min(ids.count, start + Self.idsPerCommand)]
                start += Self.idsPerCommand
                let command: [RESPArgument] = ["XCLAIM", RESPArgument(stream), RESPArgument(configuration.group),
                                               RESPArgument(configuration.consumer), "0"]
                    + chunk.map { RESPArgument($0) } + ["JUSTID"]
                do {
                    _ = try await commands.send(command)
                } catch {
                    logger.warning("could not renew the claim of running entries", metadata: [
                        "stream": "\(stream)", "entries": "\(chunk.count)", "error": "\(error)",
                    ])
                }
            }
        }
    }

    /// How often a worker renews: a third of the claim idle time, so that two renewals can fail before another
    /// worker may claim.
    static func interval(for configuration: RedisStreamsConfiguration) -> Duration {
        max(.milliseconds(10), configuration.claimIdleTime / 3)
    }
}
