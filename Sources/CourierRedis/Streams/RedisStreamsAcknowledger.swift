//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import Synchronization

/// Acknowledges handled entries and moves dead letters, in batches, from one task of the worker.
///
/// Handlers report from their own tasks through ``acknowledge(_:)`` and ``deadLetter(_:error:deliveries:)``, which
/// never wait; ``run()`` sends whatever has gathered since its last round as one `XACK` per stream.
final class RedisStreamsAcknowledger: Sendable {
    private struct DeadLetter: Sendable {
        let entry: RedisStreamEntry
        let error: String
        let deliveries: Int
    }

    private struct State {
        var acknowledgements: [String: [String]] = [:]
        var deadLetters: [DeadLetter] = []
        /// Unsafe: taken out under the lock and resumed once (a checked continuation's copies go through value
        /// witnesses, and every acknowledgement looks at it).
        var waiter: UnsafeContinuation<Void, Never>?
        var finished = false
        var isEmpty: Bool { acknowledgements.isEmpty && deadLetters.isEmpty }
    }

    private let commands: RedisConnection
    private let configuration: RedisStreamsConfiguration
    private let logger: Logger
    private let state = Mutex(State())

    init(commands: RedisConnection, configuration: RedisStreamsConfiguration, logger: Logger) {
        self.commands = commands
        self.configuration = configuration
        self.logger = logger
    }

    /// Queues an `XACK` for a finished entry.
    func acknowledge(_ entry: RedisStreamEntry) {
        wake { $0.acknowledgements[entry.stream, default: []].append(entry.id) }
    }

    /// Queues an entry for the dead-letter stream (then acknowledged).
    func deadLetter(_ entry: RedisStreamEntry, error: String, deliveries: Int) {
        wake { $0.deadLetters.append(DeadLetter(entry: entry, error: error, deliveries: deliveries)) }
    }

    /// No more reports will come: ``run()`` returns once it has sent what is queued.
    func finish() {
        wake { $0.finished = true }
    }

    /// Sends queued acknowledgements and dead letters until ``finish()``.
    func run() async {
        while true {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let ready = state.withLock { state -> Bool in
                    if !state.isEmpty || state.finished { return true }
                    state.waiter = continuation
                    return false
                }
                if ready { continuation.resume() }
            }
            let (acknowledgements, deadLetters, finished) = state.withLock { state in
                defer {
                    state.acknowledgements = [:]
                    state.deadLetters = []
                }
                return (state.acknowledgements, state.deadLetters, state.finished)
            }
            for letter in deadLetters {
                do {
                    try await Self.moveToDeadLetters(letter.entry, error: letter.error, deliveries: letter.deliveries,
                                                     commands: commands, configuration: configuration)
                    logger.warning("dead-lettered an entry", metadata: ["stream": "\(letter.entry.stream)",
                                                                        "id": "\(letter.entry.id)",
                                                                        "error": "\(letter.error)"])
                } catch {
                    // Still pending: it will be claimed and dead-lettered again.
                    logger.error("could not dead-letter \(letter.entry.stream) \(letter.entry.id): \(error)")
                }
            }
            for (stream, ids) in acknowledgements {
                do {
                    _ = try await commands.send(["XACK", RESPArgument(stream), RESPArgument(configuration.group)]
                                                + ids.map { RESPArgument($0) })
                } catch {
                    // Still pending: another delivery will follow (at least once).
                    logger.warning("could not acknowledge \(ids.count) entries of \(stream): \(error)")
                }
            }
            if finished, state.withLock({ $0.isEmpty }) { return }
        }
    }

    /// Appends `entry` to `<stream><suffix>` with its fields and the error, then acknowledges it.
    static func moveToDeadLetters(
        _ entry: RedisStreamEntry,
        error: String,
        deliveries: Int,
        commands: RedisConnection,
        configuration: RedisStreamsConfiguration
    ) async throws {
        var arguments: [RESPArgument] = ["XADD", RESPArgument(entry.stream + configuration.deadLetterSuffix)]
        if let maxLength = configuration.maxLength { arguments += ["MAXLEN", "~", RESPArgument(maxLength)] }
        arguments.append("*")
        for (name, value) in entry.fields { arguments += [RESPArgument(name), RESPArgument(value)] }
        arguments += ["error", RESPArgument(error), "source-stream", RESPArgument(entry.stream),
                      "source-id", RESPArgument(entry.id), "deliveries", RESPArgument(deliveries)]
        _ = try await commands.send(arguments)
        _ = try await commands.send(["XACK", RESPArgument(entry.stream), RESPArgument(configuration.group),
                                     RESPArgument(entry.id)])
    }

    private func wake(_ change: (inout State) -> Void) {
        let waiter = state.withLock { state -> UnsafeContinuation<Void, Never>? in
            change(&state)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
