//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import Courier
import CourierExample
import CourierKafka
import CourierTCP
import Logging
import NIOCore

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the example worker and a client in this process and show what Courier does.",
        discussion: """
            --transport kafka (default) runs on an embedded Kafka cluster (librdkafka's mock cluster) in this process;
            --transport tcp runs over TCP on a free loopback port. Nothing to install or start by hand.
            """
    )

    @Option(name: .long, help: "kafka or tcp.")
    var transport: String = "kafka"

    @Option(name: .long, help: "Seconds to measure throughput for.")
    var seconds: Double = 2

    @Option(name: .long, help: "Calls in flight during the throughput run.")
    var inFlight: Int = 64

    func validate() throws {
        guard ["tcp", "kafka"].contains(transport) else {
            throw ValidationError("--transport must be tcp or kafka, got '\(transport)'")
        }
        try validateSeconds(seconds, "--seconds")
        guard inFlight >= 1 else { throw ValidationError("--in-flight must be at least 1, got \(inFlight)") }
    }

    func run() async throws {
        bootstrapLogging(level: "error")
        let audit = AuditLog()
        var cluster: EmbeddedKafkaCluster?
        let server: any ServerTransport
        if transport == "kafka" {
            let topics = ["math.sum": 4, "math.countdown": 1, "math.fail": 1, "math.nope": 1, "audit.log": 2,
                          "audit.count": 1, KafkaReplyStrategy.singleInstance.topic: 1]
            let embedded = try await EmbeddedKafkaCluster(topics: topics)
            cluster = embedded
            var configuration = KafkaConfiguration(bootstrapServers: embedded.bootstrapServers)
            configuration.consumerProperties["session.timeout.ms"] = "6000"
            server = KafkaServerTransport(configuration: configuration)
        } else {
            server = TCPServerTransport(host: "127.0.0.1", port: 0)
        }
        defer { cluster?.close() }
        let worker = Microservice(router: ExampleService.router(audit: audit), transport: server)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let client: CourierClient
            if let kafka = server as? KafkaServerTransport, let cluster {
                printLine("Courier demo: embedded Kafka cluster at \(cluster.bootstrapServers) (NestJS Kafka wire format)")
                printLine("(the example worker joins its consumer group: about 3 s on the embedded cluster)\n")
                await kafka.waitUntilAssigned()
                _ = try await kafka.nativeServer()  // throws if the worker stopped instead (its error follows)
                client = CourierClient(
                    transport: KafkaClientTransport(
                        configuration: KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
                    )
                )
            } else {
                let port = try await (server as! TCPServerTransport).localAddress().port ?? 0
                printLine("Courier demo: example worker on tcp://127.0.0.1:\(port) (NestJS TCP wire format)\n")
                client = CourierClient(transport: TCPClientTransport(host: "127.0.0.1", port: port))
            }
            do {
                try await tour(client: client, audit: audit)
            } catch {
                printError(error)
                await client.shutdown()
                group.cancelAll()
                throw ExitCode(1)
            }
            await client.shutdown()
            group.cancelAll()
        }
    }

    private func tour(client: CourierClient, audit: AuditLog) async throws {
        printLine("1. Request/reply   send(math.sum, [1, 2, 3, 4])")
        let sum = try await client.send(ExampleService.sum, [1, 2, 3, 4])
        printLine("   → \(sum)\n")

        printLine("2. Streamed reply  sendStream(math.countdown, 5)")
        var elements: [String] = []
        for try await value in try await client.sendStream(ExampleService.countdown, 5) {
            elements.append(String(value))
        }
        printLine("   → \(elements.joined(separator: ", ")), end of stream\n")

        printLine("3. Remote error    send(math.fail, {})")
        do {
            _ = try await client.send(ExampleService.fail, [:])
        } catch let error as CourierError {
            printLine("   → CourierError code \(error.code.rawValue): \"\(error.message)\" (remote: \(error.isRemote))\n")
        }

        printLine("4. Unknown pattern send(math.nope, null) with a 2 s timeout")
        do {
            _ = try await client.send("math.nope", json: nil, timeout: .seconds(2))
        } catch let error as CourierError {
            printLine("   → \(error.code): \(error.message)")
            if error.code == .timedOut {
                printLine("     (on a broker nobody consumes an unserved pattern's topic, so nobody answers)")
            }
            printLine("")
        }

        printLine("5. Timeout         send(math.countdown as one reply, 1000000) with a 1 ms timeout")
        do {
            _ = try await client.send("math.countdown", json: 1_000_000, timeout: .milliseconds(1))
        } catch let error as CourierError {
            printLine("   → \(error.code): \(error.message)\n")
        }

        printLine("6. Events          emit(audit.log, …) × 3, then send(audit.count)")
        for user in ["ada", "grace", "linus"] {
            try await client.emit(ExampleService.auditLog, ["user": .string(user), "action": "login"])
        }
        var count = 0
        for _ in 0..<100 {
            count = try await client.send(ExampleService.auditCount, NoPayload())
            if count >= 3 { break }
            try await Task.sleep(for: .milliseconds(10))
        }
        printLine("   → the worker counted \(count) events\n")

        printLine("7. Throughput      math.sum with \(inFlight) calls in flight for \(seconds) s")
        let (calls, elapsed) = try await measure(client: client)
        let rate = Double(calls) / elapsed
        printLine("   → \(calls) calls in \(String(format2: elapsed)) s = \(Int(rate)) calls/s\n")
        printLine("Done. `courier example-worker --transport tcp://127.0.0.1:3000` serves other processes;")
        printLine("`courier dev-broker` runs an embedded Kafka cluster for them.")
    }

    private func measure(client: CourierClient) async throws -> (Int, Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .seconds(seconds)
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<inFlight {
                group.addTask {
                    var done = 0
                    while clock.now < end {
                        let reply = try await client.send(ExampleService.sum, [worker, done, 1])
                        guard reply == worker + done + 1 else {
                            throw CourierError(.unprocessable, "wrong sum \(reply)")
                        }
                        done += 1
                    }
                    return done
                }
            }
            return try await group.reduce(0, +)
        }
        let elapsed = clock.now - start
        return (total, elapsed.inSeconds)
    }
}

extension String {
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        self = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }
}
