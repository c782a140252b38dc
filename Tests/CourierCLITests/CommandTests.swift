//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierTestSupport
import Foundation
import Testing

/// Runs the built `courier` executable as a user would: an example worker in its own process, and the calling
/// commands against it over loopback TCP.
@Suite(.serialized) struct CommandTests {
    /// The `courier` binary next to the test bundle in the build folder.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("courier")
    }

    struct Output: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `courier` with `arguments` and waits (at most 30 s) for it to exit.
    static func run(_ arguments: [String]) async throws -> Output {
        try await offThePool { try runBlocking(arguments) }
    }

    private static func runBlocking(_ arguments: [String]) throws -> Output {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("courier \(arguments) did not exit within 30 s")
        }
        process.waitUntilExit()
        return Output(
            status: process.terminationStatus,
            stdout: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
            stderr: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        )
    }

    /// A running `courier example-worker` on a free loopback port.
    final class Worker: @unchecked Sendable {
        // @unchecked: the process is only touched from one test at a time.
        let process = Process()
        let url: String

        static func start() async throws -> Worker {
            try await offThePool { try Worker() }
        }

        private init() throws {
            process.executableURL = CommandTests.executable
            process.arguments = ["example-worker", "--transport", "tcp://127.0.0.1:0", "--log-level", "error"]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            // The worker prints `ready <url>` once it serves.
            var line = Data()
            let handle = out.fileHandleForReading
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard text.hasPrefix("ready ") else {
                process.terminate()
                throw CocoaError(.fileReadCorruptFile, userInfo: [NSLocalizedDescriptionKey: "worker said '\(text)'"])
            }
            url = String(text.dropFirst("ready ".count))
        }

        /// Sends SIGTERM and returns the exit status.
        func stop() async throws -> Int32 {
            try await offThePool {
                if self.process.isRunning { self.process.terminate() }
                self.process.waitUntilExit()
                return self.process.terminationStatus
            }
        }

        /// Sends SIGTERM without waiting.
        func terminate() { if process.isRunning { process.terminate() } }

        deinit { terminate() }
    }

    /// With one round, Courier's steps then the raw baseline's; with three, each step alternates the two sides (and
    /// Courier's events go out through emitBatch).
    @Test(arguments: [1, 3])
    func benchMeasuresCourierAndTheRawBaselineAndWritesJSON(rounds: Int) async throws {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).json")
        defer { try? FileManager.default.removeItem(at: json) }
        let emitBatch = rounds == 3 ? 64 : 1
        let output = try await Self.run([
            "bench", "--transports", "tcp", "--seconds", "0.3", "--warmup", "0", "--in-flight", "1,4",
            "--events", "500", "--emitters", "4", "--emit-batch", "\(emitBatch)", "--stream-length", "100",
            "--memory-calls", "200", "--rounds", "\(rounds)", "--codec-iterations", "500", "--json", json.path,
        ])
        #expect(output.status == 0, "\(output.stderr)")
        #expect(output.stdout.contains("courier/raw"))
        let report = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: json)) as? [String: Any]
        )
        let transports = try #require(report["transports"] as? [[String: Any]])
        #expect(transports.map { $0["id"] as? String } == ["tcp"])
        #expect((report["settings"] as? [String: Any])?["rounds"] as? Int == rounds)
        #expect((report["settings"] as? [String: Any])?["emitBatch"] as? Int == emitBatch)
        for side in ["courier", "raw"] {
            let figures = try #require(transports[0][side] as? [String: Any], "\(side)")
            let throughput = try #require(figures["throughput"] as? [[String: Any]])
            #expect(throughput.map { $0["inFlight"] as? Int } == [1, 4])
            #expect(throughput.allSatisfy { ($0["callsPerSecond"] as? Double ?? 0) > 0 })
            // Each step accounts for the CPU of the bench process and of the worker (or raw server) process.
            for point in throughput {
                let cpu = try #require(point["cpu"] as? [String: Any], "\(side) \(point)")
                #expect(cpu["units"] as? Int == point["calls"] as? Int)
                #expect(cpu["clientSeconds"] as? Double ?? 0 > 0)
                #expect(cpu["workerSeconds"] as? Double != nil, "the worker's CPU is read from /proc")
                #expect(cpu["busyCores"] as? Double ?? 0 > 0)
            }
            let eventsCPU = try #require(figures["eventsCPU"] as? [String: Any], "\(side)")
            #expect(eventsCPU["units"] as? Int == 500)
            #expect((figures["latency"] as? [String: Any])?["p50Micros"] as? Double ?? 0 > 0)
            #expect(figures["eventsPerSecond"] as? Double ?? 0 > 0)
            #expect((figures["failures"] as? [Any])?.isEmpty == true)
        }
        #expect((transports[0]["ratios"] as? [String: Any])?["latencyP50"] as? Double ?? 0 > 0)
        let memory = try #require(report["memory"] as? [String: Any])
        #expect(memory["inFlight"] as? Int == 200)
        #expect(memory["failures"] as? Int == 0)
        #expect(memory["workerPeakRSSMiB"] as? Double ?? 0 > 0)
        let codec = try #require(report["codec"] as? [String: Any])
        #expect(codec["tcpCallMicros"] as? Double ?? 0 > 0)
        #expect(codec["kafkaEventMicros"] as? Double ?? 0 > 0)
        #expect(codec["iterations"] as? Int == 500)
        #expect(output.stdout.contains("codec alone"))
        let targets = try #require(report["targets"] as? [[String: Any]])
        let names = targets.compactMap { $0["name"] as? String }
        #expect(names.contains { $0.hasPrefix("TCP: sequential p50") })
        #expect(names.contains { $0.hasPrefix("Memory:") })
        #expect(!names.contains { $0.contains("64 in flight") }, "a target whose figure was not measured is left out")
    }

    @Test func benchRejectsAnUnknownTransport() async throws {
        let output = try await Self.run(["bench", "--transports", "carrier-pigeon"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("unknown transport 'carrier-pigeon'"))
    }

    @Test func sendPrintsTheReplyAsJSON() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        let output = try await Self.run(["send", "--transport", worker.url, "math.sum", "[1,2,3]"])
        #expect(output.status == 0, "stderr: \(output.stderr)")
        #expect(output.stdout == "6\n")
    }

    @Test func streamPrintsEachElementOnItsOwnLine() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        let output = try await Self.run(["stream", "--transport", worker.url, "--idle-timeout", "5", "math.countdown", "3"])
        #expect(output.status == 0, "stderr: \(output.stderr)")
        #expect(output.stdout == "3\n2\n1\n")
    }

    @Test func emittedEventsAreCounted() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        for user in ["ada", "grace"] {
            let emitted = try await Self.run(["emit", "--transport", worker.url, "audit.log", "{\"user\":\"\(user)\"}"])
            #expect(emitted.status == 0, "stderr: \(emitted.stderr)")
            #expect(emitted.stdout.isEmpty)
        }
        #expect(try await Self.reply(of: "audit.count", from: worker, reaching: "2") == "2\n")
    }

    /// What `courier send PATTERN` prints, polled (for up to a second) until it is `expected`.
    static func reply(of pattern: String, from worker: Worker, reaching expected: String) async throws -> String {
        var printed = ""
        for _ in 0..<50 {
            printed = try await run(["send", "--transport", worker.url, pattern]).stdout
            if printed == expected + "\n" { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        return printed
    }

    /// `emit --count` emits identical events (in batches with `--batch`) and prints a summary line; each arrives.
    @Test func emitCountSendsEveryEventAndPrintsASummary() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        for (count, batch) in [(3, 1), (250, 100)] {
            let emitted = try await Self.run(["emit", "--transport", worker.url, "--count", "\(count)",
                                              "--batch", "\(batch)", "load.tick", "[1,2,3]"])
            #expect(emitted.status == 0, "stderr: \(emitted.stderr)")
            #expect(emitted.stdout.hasPrefix("events=\(count) seconds="), "\(emitted.stdout)")
        }
        #expect(try await Self.reply(of: "load.ticks", from: worker, reaching: "253") == "253\n")
        let refused = try await Self.run(["emit", "--transport", worker.url, "--count", "0", "load.tick"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--count must be at least 1"))
    }

    @Test func aRemoteErrorExitsNonZeroWithOneLine() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        let output = try await Self.run(["send", "--transport", worker.url, "math.fail", "{}"])
        #expect(output.status == 1)
        #expect(output.stdout.isEmpty)
        #expect(output.stderr.hasPrefix("error: unprocessable(422): math.fail always fails"))
        #expect(output.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func anUnknownPatternExitsNonZero() async throws {
        let worker = try await Worker.start()
        defer { worker.terminate() }
        let output = try await Self.run(["send", "--transport", worker.url, "math.nope"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("error: noHandler(501): There is no matching message handler"))
    }

    @Test func anUnreachableWorkerExitsNonZero() async throws {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let output = try await Self.run(["send", "--transport", "tcp://127.0.0.1:1", "math.sum", "[1]"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("error: transportUnavailable(503):"))
    }

    @Test func aBadURLOrPayloadIsRejected() async throws {
        let badURL = try await Self.run(["send", "--transport", "nope://x:1", "math.sum", "[1]"])
        #expect(badURL.status == 2)
        #expect(badURL.stderr.contains("unsupported transport 'nope'"))
        let badJSON = try await Self.run(["send", "--transport", "tcp://127.0.0.1:1", "math.sum", "[1,"])
        #expect(badJSON.status == 2)
        #expect(badJSON.stderr.hasPrefix("error: the payload is not valid JSON"))
        #expect(badJSON.stderr.filter { $0 == "\n" }.count == 1, "one error line: \(badJSON.stderr)")
        let badHeader = try await Self.run(["emit", "--transport", "tcp://127.0.0.1:1", "--header", "novalue", "x"])
        #expect(badHeader.status == 2)
        #expect(badHeader.stderr.hasPrefix("error: header 'novalue' is not key=value"))
    }

    /// Numbers that would crash a conversion, or make no sense, are refused before anything runs.
    @Test(arguments: [
        ["send", "--transport", "tcp://127.0.0.1:1", "--timeout", "inf", "math.sum"],
        ["send", "--transport", "tcp://127.0.0.1:1", "--timeout", "nan", "math.sum"],
        ["send", "--transport", "tcp://127.0.0.1:1", "--timeout", "1e300", "math.sum"],
        ["send", "--transport", "tcp://127.0.0.1:1", "--log-level", "bogus", "math.sum"],
        ["example-worker", "--transport", "tcp://127.0.0.1:0", "--shutdown-timeout", "inf"],
        ["example-worker", "--transport", "tcp://127.0.0.1:0", "--max-concurrent-handlers", "0"],
        ["demo", "--transport", "tcp", "--in-flight=-1"],
        ["demo", "--transport", "tcp", "--seconds", "inf"],
        ["bench", "--seconds", "inf"],
        ["stream", "--transport", "tcp://127.0.0.1:1", "--idle-timeout", "nan", "math.countdown", "3"],
    ])
    func badNumbersAreRefused(_ arguments: [String]) async throws {
        let output = try await Self.run(arguments)
        #expect(output.status == 64, "\(arguments): status \(output.status), \(output.stderr)")
        #expect(output.stderr.hasPrefix("Error: "), "\(output.stderr)")
    }

    @Test func aMisspeltTCPOptionIsRejected() async throws {
        let output = try await Self.run(["send", "--transport", "tcp://127.0.0.1:1?maxFrameLen=5", "math.sum", "[1]"])
        #expect(output.status == 2)
        #expect(output.stderr.contains("unknown TCP URL option 'maxFrameLen'"))
    }

    /// A Kafka worker that never gets its partitions (nothing listens at the broker address) still stops on SIGTERM
    /// instead of waiting for ever to print its ready line.
    @Test func aKafkaWorkerThatIsNeverReadyStillStopsOnSIGTERM() async throws {
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["example-worker", "--transport", "kafka://127.0.0.1:1", "--log-level", "critical",
                             "--shutdown-timeout", "1"]
        process.standardOutput = Pipe()
        process.standardError = Pipe()
        try process.run()
        try await Task.sleep(for: .seconds(2))
        process.terminate()
        let deadline = ContinuousClock.now + .seconds(20)
        while process.isRunning, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(!process.isRunning, "still running 20 s after SIGTERM")
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    @Test func sigtermStopsTheWorkerCleanly() async throws {
        let worker = try await Worker.start()
        #expect(try await worker.stop() == 0)
    }
}
