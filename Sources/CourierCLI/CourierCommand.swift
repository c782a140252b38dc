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
            Transports are named by URL: tcp://HOST:PORT (NestJS TCP wire format), or
            kafka://HOST:PORT[,HOST:PORT...][?group=G&replyTopic=T&replyPartition=P&<librdkafka property>=V]
            (NestJS Kafka wire format).
            """,
        subcommands: [Send.self, Emit.self, Stream.self, ExampleWorker.self, Demo.self, DevBroker.self]
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

    var timeoutDuration: Duration { .milliseconds(Int64(timeout * 1000)) }
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
    static let configuration = CommandConfiguration(abstract: "Send a request and print the reply as JSON.")

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    func run() async throws {
        let json = try payload.payload()
        let headers = try options.parsedHeaders()
        let pattern = payload.pattern
        try await runClientCommand(options: options) { client in
            let reply = try await client.send(pattern, json: json, headers: headers)
            printLine(reply.description)
        }
    }
}

struct Emit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Emit an event (no reply).")

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    func run() async throws {
        let json = try payload.payload()
        let headers = try options.parsedHeaders()
        let pattern = payload.pattern
        try await runClientCommand(options: options) { client in
            try await client.emit(pattern, json: json, headers: headers)
        }
    }
}

struct Stream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Send a request and print each streamed reply as it arrives, one JSON value per line."
    )

    @OptionGroup var options: CallOptions
    @OptionGroup var payload: PayloadArgument

    func run() async throws {
        let json = try payload.payload()
        let headers = try options.parsedHeaders()
        let pattern = payload.pattern
        try await runClientCommand(options: options) { client in
            for try await element in try await client.sendStream(pattern, json: json, headers: headers) {
                printLine(element.description)
            }
        }
    }
}
