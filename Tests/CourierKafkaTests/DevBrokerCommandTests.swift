//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierKafka
import CourierTestSupport
import Foundation
import Testing

/// Runs the built `courier dev-broker` as a user would and talks Kafka to it.
@Suite struct DevBrokerCommandTests {
    /// A running `courier dev-broker`.
    typealias Broker = CourierProcess

    @Test func printsReadyServesKafkaAndExitsCleanlyOnSigterm() async throws {
        let broker = try await offThePool { try Broker(arguments: ["dev-broker", "--brokers", "2", "--topic", "demo:3"]) }
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
        let broker = try await offThePool { try Broker(arguments: ["dev-broker", "--topic", "no-partitions"]) }
        #expect(broker.readyLine.isEmpty)
        let status = try await offThePool { try broker.stop() }
        #expect(status != 0)
    }
}
