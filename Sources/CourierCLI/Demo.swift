//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import Courier
import CourierExample
import CourierTCP
import Logging
import NIOCore

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the example worker and a client in this process and show what Courier does.",
        discussion: "Runs over TCP on a free loopback port; nothing to install or start by hand."
    )

    @Option(name: .long, help: "Seconds to measure throughput for.")
    var seconds: Double = 2

    @Option(name: .long, help: "Calls in flight during the throughput run.")
    var inFlight: Int = 64

    func run() async throws {
        bootstrapLogging(level: "warning")
        let server = TCPServerTransport(host: "127.0.0.1", port: 0)
        let audit = AuditLog()
        let worker = Microservice(router: ExampleService.router(audit: audit), transport: server)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let address = try await server.localAddress()
            let port = address.port ?? 0
            printLine("Courier demo: example worker on tcp://127.0.0.1:\(port) (NestJS TCP wire format)\n")
            let client = CourierClient(transport: TCPClientTransport(host: "127.0.0.1", port: port))
            do {
                try await tour(client: client, audit: audit)
            } catch {
                printError(error)
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

        printLine("4. Unknown pattern send(math.nope, null)")
        do {
            _ = try await client.send("math.nope", json: nil)
        } catch let error as CourierError {
            printLine("   → \(error.code): \(error.message)\n")
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
        printLine("Done. Run `courier example-worker --transport tcp://127.0.0.1:3000` to serve other processes.")
    }

    private func measure(client: CourierClient) async throws -> (Int, Double) {
        let clock = ContinuousClock()
        let start = clock.now
        let end = start + .milliseconds(Int64(seconds * 1000))
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
        return (total, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }
}

extension String {
    init(format2 value: Double) {
        let hundredths = Int((value * 100).rounded())
        self = "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
    }
}
