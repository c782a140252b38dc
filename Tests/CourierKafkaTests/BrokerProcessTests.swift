//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample
import CourierKafka
import CourierTestSupport
import Foundation
import Testing

/// The broker-process tier: `courier dev-broker` and `courier example-worker` each in a process of their own,
/// reached over loopback by a foreign client (Debian's `kcat`, speaking NestJS's headers by hand) and by a Courier
/// client in this process.
@Suite(.serialized) struct BrokerProcessTests {
    /// Runs kcat with `arguments`, feeding `input` on stdin; returns its stdout. Blocking: use through `offThePool`.
    static func kcat(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/kcat")
        process.arguments = arguments
        let out = Pipe()
        let inPipe = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = inPipe
        try process.run()
        if let input { inPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inPipe.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/kcat")))
    func kcatAndCourierClientsCallAWorkerProcessThroughABrokerProcess() async throws {
        let topics = ["math.sum:2", "math.countdown:1", "math.fail:1", "audit.log:1", "audit.count:1",
                      "kcat.replies:1", "courier.replies:1"]
        let broker = try await offThePool {
            try CourierProcess(arguments: ["dev-broker"] + topics.flatMap { ["--topic", $0] })
        }
        let url = broker.readyURL
        #expect(url.hasPrefix("kafka://127.0.0.1:"), "\(broker.readyLine)")
        let servers = String(url.dropFirst("kafka://".count))
        let worker = try await offThePool {
            try CourierProcess(arguments: ["example-worker", "--transport", url + "?session.timeout.ms=6000",
                                           "--log-level", "error"])
        }
        #expect(worker.readyLine.hasPrefix("ready kafka://"), "\(worker.readyLine)")

        // A foreign client: kcat produces a NestJS-format request and reads the NestJS-format reply.
        _ = try await offThePool {
            try Self.kcat(
                ["-b", servers, "-t", "math.sum", "-P",
                 "-H", "kafka_correlationId=kcat-1", "-H", "kafka_replyTopic=kcat.replies",
                 "-H", "kafka_replyPartition=0"],
                input: "[1,2,3]\n"
            )
        }
        let reply = try await offThePool {
            try Self.kcat(["-b", servers, "-C", "-t", "kcat.replies", "-p", "0", "-o", "beginning", "-c", "1",
                           "-f", "%s|%h\n"])
        }
        #expect(reply.hasPrefix("6|"), "\(reply)")
        #expect(reply.contains("kafka_correlationId=kcat-1"), "\(reply)")
        #expect(reply.contains("kafka_nest-is-disposed="), "\(reply)")

        // A Courier client in this process.
        let client = CourierClient(
            transport: KafkaClientTransport(
                configuration: KafkaConfiguration(bootstrapServers: servers),
                logger: KafkaMockHarness.quietLogger
            ),
            configuration: ClientConfiguration(defaultTimeout: .seconds(15))
        )
        #expect(try await client.send(ExampleService.sum, [20, 22]) == 42)
        #expect(try await client.sendStream(ExampleService.countdown, 3).collect() == [3, 2, 1])
        await #expect(throws: CourierError.self) { try await client.send(ExampleService.fail, [:]) }
        await client.shutdown()

        #expect(try await offThePool { try worker.stop() } == 0)
        #expect(try await offThePool { try broker.stop() } == 0)
    }
}
