//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import Courier
import CourierExample
import Logging
import ServiceLifecycle
import UnixSignals

struct ExampleWorker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example-worker",
        abstract: "Run the example service (math.sum, math.countdown, math.fail, audit.*, load.*).",
        discussion: """
            Prints one line 'ready <url>' on stdout once it serves (with port 0, the URL names the real port).
            SIGTERM or SIGINT drain in-flight work, then exit.
            """
    )

    @Option(name: .long, help: "The transport URL to serve, e.g. tcp://0.0.0.0:3000.")
    var transport: String

    @Option(name: .long, help: "The most handlers that run at once.")
    var maxConcurrentHandlers: Int = 1024

    @Option(name: .long, help: "Seconds a graceful shutdown waits for in-flight handlers.")
    var shutdownTimeout: Double = 30

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    /// A file the worker appends each handled `audit.log` payload to, one JSON line per event, written before the
    /// handler returns: it survives SIGKILL, so a test can see which events were handled (and which twice).
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Append each handled audit.log payload to this file as a line of JSON (one unbuffered write per event).",
            discussion: "The file is created if missing and never truncated; several workers may share it.",
            valueName: "file"
        )
    )
    var journal: String?

    func validate() throws {
        guard maxConcurrentHandlers >= 1 else {
            throw ValidationError("--max-concurrent-handlers must be at least 1, got \(maxConcurrentHandlers)")
        }
        try validateSeconds(shutdownTimeout, "--shutdown-timeout", allowZero: true)
        try validateLogLevel(logLevel)
    }

    func run() async throws {
        bootstrapLogging(level: logLevel)
        let logger = Logger(label: "courier.example-worker")
        let server: any ServerTransport
        let audit: AuditLog
        do {
            server = try TransportFactory.server(for: transport)
            audit = try journal.map { try AuditLog(journalPath: $0) } ?? AuditLog()
        } catch {
            printError(error)
            throw ExitCode(2)
        }
        let worker = Microservice(
            router: ExampleService.router(audit: audit),
            transport: server,
            configuration: MicroserviceConfiguration(
                maxConcurrentHandlers: maxConcurrentHandlers,
                gracefulShutdownTimeout: .seconds(shutdownTimeout)
            ),
            logger: logger
        )
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: worker)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger
            )
        )
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                tasks.addTask {
                    // Not printed when the worker stopped or failed before it was ready (the group reports why).
                    guard let url = try? await TransportFactory.readyURL(of: server) else { return }
                    printLine("ready \(url)")
                }
                try await tasks.waitForAll()
            }
        } catch {
            printError(error)
            throw ExitCode(1)
        }
    }
}
