//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import Courier
import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

@main
struct CourierCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "courier",
        abstract: "Call Courier and NestJS services, run the example worker, or watch a demo.",
        discussion: """
            Transports are named by URL: tcp://HOST:PORT (NestJS TCP wire format),
            kafka://HOST:PORT[,HOST:PORT...][?group=G&replyTopic=T&replyPartition=P&<librdkafka property>=V]
            (NestJS Kafka wire format), redis://[[USER]:PASSWORD@]HOST[:PORT][/DB] (NestJS Redis pub/sub), or
            redis+streams://HOST[:PORT][?group=G] (Redis Streams with consumer groups). docs/getting-started.md
            lists every URL option.
            """,
        subcommands: [Send.self, Emit.self, Stream.self, ExampleWorker.self, Demo.self, DevBroker.self, Bench.self,
                      BenchRawServer.self]
    )
}

/// Options every calling command shares.
struct CallOptions: ParsableArguments {
    @Option(name: .long, help: "The transport URL, e.g. tcp://127.0.0.1:3000.")
    var transport: String

    @Option(name: .long, help: "Seconds to wait for the final reply.")
    var timeout: Double = 30

    @Option(name: .customLong("header"), help: "A header as key=value (repeatable).")
    var headers: [String] = []

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        try validateSeconds(timeout, "--timeout")
        try validateLogLevel(logLevel)
    }

    func parsedHeaders() throws -> [String: String] {
        var result: [String: String] = [:]
        for header in headers {
            guard let equals = header.firstIndex(of: "=") else {
                throw ValidationError("header '\(header)' is not key=value")
            }
            result[String(header[..<equals])] = String(header[header.index(after: equals)...])
        }
        return result
    }

    var timeoutDuration: Duration { .seconds(timeout) }
}

/// The longest a seconds option may be: about 31 years, far past any real timeout and far inside `Duration`.
let longestSecondsOption: Double = 1e9

/// Rejects a seconds option that is not a finite, positive number (or one too long to be meant).
func validateSeconds(_ value: Double, _ name: String, allowZero: Bool = false) throws {
    guard value.isFinite, allowZero ? value >= 0 : value > 0, value <= longestSecondsOption else {
        throw ValidationError("\(name) must be a number of seconds \(allowZero ? "≥ 0" : "> 0") and at most 1e9, got \(value)")
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number (for printed figures and rates).
    var inSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}

extension CourierClient {
    /// Emits `count` copies of `json` on `pattern`, `batch` per `emitBatch` call (1: one `emit` after another), as
    /// `courier emit --count` and the bench's event step do.
    func emitCopies(of json: JSONValue, to pattern: String, count: Int, batch: Int,
                    headers: [String: String] = [:]) async throws {
        var left = count
        while left > 0 {
            let size = min(batch, left)
            if size == 1 {
                try await emit(pattern, json: json, headers: headers)
            } else {
                try await emitBatch(pattern, json: Array(repeating: json, count: size), headers: headers)
            }
            left -= size
        }
    }
}

/// Rejects a count below 1 (`nil`: not given).
func validatePositive(_ value: Int?, _ name: String) throws {
    if let value, value < 1 { throw ValidationError("\(name) must be at least 1, got \(value)") }
}

/// Rejects a log level `Logger.Level` does not name.
func validateLogLevel(_ level: String) throws {
    guard Logger.Level(rawValue: level.lowercased()) != nil else {
        throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical, got '\(level)'")
    }
}

struct PayloadArgument: ParsableArguments {
    @Argument(help: "The pattern to call.")
    var pattern: String

    @Argument(help: "The JSON payload (default: null).")
    var json: String = "null"

    func payload() throws -> JSONValue {
        do {
            return try JSONValue(parsing: json)
        } catch {
            throw ValidationError("the payload is not valid JSON: \(error)")
        }
    }
}

/// The payload and headers of a calling command, or a one-line error and exit status 2 (as for a bad URL).
func parsedInput(_ payload: PayloadArgument, _ options: CallOptions) throws -> (JSONValue, [String: String]) {
    do {
        return (try payload.payload(), try options.parsedHeaders())
    } catch {
        printError(error)
        throw ExitCode(2)
    }
}

/// Runs a client command and turns failures into a one-line error and a non-zero exit code.
func runClientCommand(
    options: CallOptions,
    _ body: @Sendable (CourierClient) async throws -> Void
) async throws {
    bootstrapLogging(level: options.logLevel)
    let client: CourierClient
    do {
        client = CourierClient(
            transport: try TransportFactory.client(for: options.transport),
            configuration: ClientConfiguration(defaultTimeout: options.timeoutDuration)
        )
    } catch {
        printError(error)
        throw ExitCode(2)
    }
    do {
        try await body(client)
        await client.shutdown()
    } catch {
        await client.shutdown()
        printError(error)
        throw ExitCode(1)
    }
}

func printError(_ error: any Error) {
    let line: String
    if let courier = error as? CourierError {
        var text = "error: \(courier.code): \(courier.message)"
        if let details = courier.details { text += " details=\(details)" }
        line = text
    } else {
        line = "error: \(error)"
    }
    writeAll(line.replacingNewlines() + "\n", to: 2)
}

/// Writes straight to a file descriptor: unbuffered, so lines appear at once and in order.
func writeAll(_ text: String, to descriptor: Int32) {
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { raw in
            write(descriptor, raw.baseAddress! + offset, raw.count - offset)
        }
        if written <= 0 { return }
        offset += written
    }
}

extension String {
    func replacingNewlines() -> String {
        String(map { $0.isNewline ? " " : $0 })
    }
}

/// Flushes stdout after each line so pipes see elements as they arrive.
func printLine(_ text: String) {
    writeAll(text + "\n", to: 1)
}

func bootstrapLogging(level: String) {
    let parsed = Logger.Level(rawValue: level.lowercased()) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = parsed
        return handler
    }
}

struct Send: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a request and print the reply as JSON.",
        discussion: """
            With --count N it makes N identical calls, at most --in-flight at a time (each with its own --timeout), \
            and prints one summary line instead of the replies: calls, replies, failures, seconds, calls per \
            second and how often each reply value came back. It exits with status 1 if any call failed, after \
            printing the first failure.
            """
    )

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    @Option(name: .long, help: "Make this many calls and print a summary line instead of the reply.")
    var count: Int?

    @Option(name: .long, help: "With --count: how many calls are in flight at once.")
    var inFlight: Int = 1

    func validate() throws {
        try validatePositive(count, "--count")
        try validatePositive(inFlight, "--in-flight")
    }

    func run() async throws {
        let (json, headers) = try parsedInput(payload, options)
        let pattern = payload.pattern
        let count = self.count
        let inFlight = self.inFlight
        try await runClientCommand(options: options) { client in
            guard let count else {
                let reply = try await client.send(pattern, json: json, headers: headers)
                printLine(reply.description)
                return
            }
            let batch = await CallBatch.run(count: count, inFlight: inFlight) {
                try await client.send(pattern, json: json, headers: headers)
            }
            printLine(batch.summary)
            if let failure = batch.firstFailure {
                throw CourierError.wrapping(failure, as: .transportUnavailable, "a call to '\(pattern)' failed")
            }
        }
    }
}

/// The outcome of `courier send --count`: many calls of one request, a bounded number in flight.
struct CallBatch {
    var calls = 0
    var replies = 0
    var failures = 0
    var firstFailure: (any Error)?
    /// How many times each reply value (as JSON text) came back.
    var replyValues: [String: Int] = [:]
    var duration: Duration = .zero

    /// Makes `count` calls with at most `inFlight` running at once; failed calls are counted, not thrown.
    static func run(
        count: Int,
        inFlight: Int,
        _ call: @escaping @Sendable () async throws -> JSONValue
    ) async -> CallBatch {
        var batch = CallBatch(calls: count)
        let clock = ContinuousClock()
        let start = clock.now
        await withTaskGroup(of: Result<JSONValue, any Error>.self) { group in
            var started = 0
            func startOne() {
                started += 1
                group.addTask {
                    do { return .success(try await call()) } catch { return .failure(error) }
                }
            }
            while started < min(inFlight, count) { startOne() }
            for await result in group {
                switch result {
                case .success(let value):
                    batch.replies += 1
                    batch.replyValues[value.description, default: 0] += 1
                case .failure(let error):
                    batch.failures += 1
                    if batch.firstFailure == nil { batch.firstFailure = error }
                }
                if started < count { startOne() }
            }
        }
        batch.duration = start.duration(to: clock.now)
        return batch
    }

    /// One line, e.g. `calls=1000 replies=1000 failures=0 seconds=2.41 calls/s=415 values: 6 x1000`.
    var summary: String {
        let seconds = duration.inSeconds
        let rate = seconds > 0 ? Int((Double(calls) / seconds).rounded()) : 0
        let shown = 5
        let values = replyValues.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
        var text = "calls=\(calls) replies=\(replies) failures=\(failures) seconds=\(Self.twoDecimals(seconds))"
            + " calls/s=\(rate)"
        if !values.isEmpty {
            text += " values: " + values.prefix(shown).map { "\($0.key.replacingNewlines()) x\($0.value)" }
                .joined(separator: ", ")
            if values.count > shown { text += ", … (\(values.count) distinct)" }
        }
        return text
    }

    static func twoDecimals(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

struct Emit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Emit an event (no reply).",
        discussion: """
            With --count N it emits N identical events, --batch at a time through emitBatch (1: one emit after \
            another), and prints one summary line: events, seconds and events per second until the transport \
            accepted the last.
            """
    )

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    @Option(name: .long, help: "Emit this many identical events and print a summary line.")
    var count: Int?

    @Option(name: .long, help: "With --count: events per emitBatch call (1: emit them one at a time).")
    var batch: Int = 1

    func validate() throws {
        try validatePositive(count, "--count")
        try validatePositive(batch, "--batch")
    }

    func run() async throws {
        let (json, headers) = try parsedInput(payload, options)
        let pattern = payload.pattern
        let count = self.count
        let batch = self.batch
        try await runClientCommand(options: options) { client in
            guard let count else {
                try await client.emit(pattern, json: json, headers: headers)
                return
            }
            let clock = ContinuousClock()
            let started = clock.now
            try await client.emitCopies(of: json, to: pattern, count: count, batch: batch, headers: headers)
            let seconds = started.duration(to: clock.now).inSeconds
            let rate = seconds > 0 ? Int((Double(count) / seconds).rounded()) : 0
            printLine("events=\(count) seconds=\(CallBatch.twoDecimals(seconds)) events/s=\(rate)")
        }
    }
}

struct Stream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a request and print each streamed reply as it arrives, one JSON value per line."
    )

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    @Option(name: .long, help: "Seconds to wait for each element after the previous one (default: only --timeout).")
    var idleTimeout: Double?

    func validate() throws {
        if let idleTimeout { try validateSeconds(idleTimeout, "--idle-timeout") }
    }

    func run() async throws {
        let (json, headers) = try parsedInput(payload, options)
        let pattern = payload.pattern
        let idle = idleTimeout.map { Duration.seconds($0) }
        try await runClientCommand(options: options) { client in
            for try await element in try await client.sendStream(pattern, json: json, idleTimeout: idle,
                                                                 headers: headers) {
                printLine(element.description)
            }
        }
    }
}
