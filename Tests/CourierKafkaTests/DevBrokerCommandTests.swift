//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierKafka
import Foundation
import Testing

/// Runs the built `courier dev-broker` as a user would and talks Kafka to it.
@Suite struct DevBrokerCommandTests {
    /// The `courier` binary next to the test bundle in the build folder.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("courier")
    }

    /// A running `courier dev-broker`.
    final class Broker: @unchecked Sendable {
        // @unchecked: the process is only touched from one test at a time.
        let process = Process()
        let readyLine: String

        init(arguments: [String]) throws {
            process.executableURL = DevBrokerCommandTests.executable
            process.arguments = ["dev-broker"] + arguments
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            var line = Data()
            let handle = out.fileHandleForReading
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            readyLine = String(decoding: line, as: UTF8.self)
        }

        /// Sends SIGTERM and returns the exit status (waiting at most 10 s).
        func stop() throws -> Int32 {
            if process.isRunning { process.terminate() }
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning, Date() < deadline { usleep(10_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                Issue.record("dev-broker did not exit within 10 s of SIGTERM")
            }
            process.waitUntilExit()
            return process.terminationStatus
        }

        deinit { if process.isRunning { process.terminate() } }
    }

    @Test func printsReadyServesKafkaAndExitsCleanlyOnSigterm() async throws {
        let broker = try await offThePool { try Broker(arguments: ["--brokers", "2", "--topic", "demo:3"]) }
        let line = broker.readyLine
        #expect(line.hasPrefix("ready kafka://127.0.0.1:") && line.hasSuffix("\n"), "\(line)")
        let servers = String(line.dropFirst("ready kafka://".count).dropLast())
        #expect(servers.split(separator: ",").count == 2, "\(servers)")

        let producer = try KafkaProducer(bootstrapServers: servers)
        let report = try await producer.send(
            topic: "demo",
            partition: 2,
            key: Array("k".utf8),
            value: Array("hello".utf8),
            headers: [("h", [7])]
        )
        #expect(report.partition == 2 && report.offset == 0)
        await producer.close()
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "demo", partitions: 3, count: 1)
        }
        #expect(read.map(\.value) == [Array("hello".utf8)])
        #expect(read.first?.headers == [.init(name: "h", value: [7])])

        let status = try await offThePool { try broker.stop() }
        #expect(status == 0)
    }

    @Test func rejectsAMalformedTopic() async throws {
        let broker = try await offThePool { try Broker(arguments: ["--topic", "no-partitions"]) }
        #expect(broker.readyLine.isEmpty)
        let status = try await offThePool { try broker.stop() }
        #expect(status != 0)
    }
}
