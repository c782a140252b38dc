//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierKafka
import Testing

@Suite struct EmbeddedKafkaClusterTests {
    @Test func startsOnLoopbackWithAnEphemeralPort() async throws {
        let cluster = try await EmbeddedKafkaCluster()
        defer { cluster.close() }
        let servers = cluster.bootstrapServers
        #expect(servers.hasPrefix("127.0.0.1:"), "\(servers)")
        let port = Int(servers.dropFirst("127.0.0.1:".count))
        #expect(port.map { $0 > 0 && $0 < 65536 } == true, "\(servers)")
    }

    @Test func listsEveryBroker() async throws {
        let cluster = try await EmbeddedKafkaCluster(brokers: 3, topics: ["orders": 2])
        defer { cluster.close() }
        #expect(cluster.bootstrapServers.split(separator: ",").count == 3, "\(cluster.bootstrapServers)")
    }

    @Test func createTopicWorksAndCloseIsIdempotent() async throws {
        let cluster = try await EmbeddedKafkaCluster()
        try await cluster.createTopic("payments", partitions: 4)
        await #expect(throws: CourierError.self) { try await cluster.createTopic("bad", partitions: 0) }
        cluster.close()
        cluster.close()
        await cluster.waitUntilClosed()
        await cluster.waitUntilClosed()
        let error = await #expect(throws: CourierError.self) { try await cluster.createTopic("late", partitions: 1) }
        #expect(error?.code == .transportUnavailable)
    }
}
