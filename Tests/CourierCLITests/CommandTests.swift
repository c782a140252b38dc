//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation
import Testing

/// Runs the built `courier` executable as a user would: an example worker in its own process, and the calling
/// commands against it over loopback TCP.
@Suite(.serialized) struct CommandTests {
    /// The `courier` binary next to the test bundle in the build folder.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("courier")
    }

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `courier` with `arguments` and waits (at most 30 s) for it to exit.
    static func run(_ arguments: [String]) throws -> Output {
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
    final class Worker {
        let process = Process()
        let url: String

        init() throws {
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
        func stop() -> Int32 {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
            return process.terminationStatus
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    @Test func sendPrintsTheReplyAsJSON() throws {
        let worker = try Worker()
        defer { _ = worker.stop() }
        let output = try Self.run(["send", "--transport", worker.url, "math.sum", "[1,2,3]"])
        #expect(output.status == 0, "stderr: \(output.stderr)")
        #expect(output.stdout == "6\n")
    }

    @Test func streamPrintsEachElementOnItsOwnLine() throws {
        let worker = try Worker()
        defer { _ = worker.stop() }
        let output = try Self.run(["stream", "--transport", worker.url, "math.countdown", "3"])
        #expect(output.status == 0, "stderr: \(output.stderr)")
        #expect(output.stdout == "3\n2\n1\n")
    }

    @Test func emittedEventsAreCounted() throws {
        let worker = try Worker()
        defer { _ = worker.stop() }
        for user in ["ada", "grace"] {
            let emitted = try Self.run(["emit", "--transport", worker.url, "audit.log", "{\"user\":\"\(user)\"}"])
            #expect(emitted.status == 0, "stderr: \(emitted.stderr)")
            #expect(emitted.stdout.isEmpty)
        }
        var count = ""
        for _ in 0..<50 {
            count = try Self.run(["send", "--transport", worker.url, "audit.count"]).stdout
            if count == "2\n" { break }
            usleep(20_000)
        }
        #expect(count == "2\n")
    }

    @Test func aRemoteErrorExitsNonZeroWithOneLine() throws {
        let worker = try Worker()
        defer { _ = worker.stop() }
        let output = try Self.run(["send", "--transport", worker.url, "math.fail", "{}"])
        #expect(output.status == 1)
        #expect(output.stdout.isEmpty)
        #expect(output.stderr.hasPrefix("error: unprocessable(422): math.fail always fails"))
        #expect(output.stderr.filter { $0 == "\n" }.count == 1)
    }

    @Test func anUnknownPatternExitsNonZero() throws {
        let worker = try Worker()
        defer { _ = worker.stop() }
        let output = try Self.run(["send", "--transport", worker.url, "math.nope"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("error: noHandler(501): There is no matching message handler"))
    }

    @Test func anUnreachableWorkerExitsNonZero() throws {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let output = try Self.run(["send", "--transport", "tcp://127.0.0.1:1", "math.sum", "[1]"])
        #expect(output.status == 1)
        #expect(output.stderr.hasPrefix("error: transportUnavailable(503):"))
    }

    @Test func aBadURLOrPayloadIsRejected() throws {
        let badURL = try Self.run(["send", "--transport", "nope://x:1", "math.sum", "[1]"])
        #expect(badURL.status == 2)
        #expect(badURL.stderr.contains("unsupported transport 'nope'"))
        let badJSON = try Self.run(["send", "--transport", "tcp://127.0.0.1:1", "math.sum", "[1,"])
        #expect(badJSON.status != 0)
        #expect(badJSON.stderr.contains("not valid JSON"))
    }

    @Test func sigtermStopsTheWorkerCleanly() throws {
        let worker = try Worker()
        #expect(worker.stop() == 0)
    }
}
