//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierKafka
import Foundation
import Logging
import Testing

@Suite struct KafkaAdminTests {
    /// For clients pointed at a closed port on purpose: librdkafka logs every refused connection as an error.
    static var silent: Logger {
        var logger = Logger(label: "courier.kafka.test")
        logger.logLevel = .critical
        return logger
    }

    /// librdkafka 2.0.2's mock cluster answers no CreateTopics (it names no controller), so creation runs on tansu.
    @Test(.enabled(if: ProcessInfo.processInfo.environment["COURIER_TANSU_BOOTSTRAP"] != nil))
    func createsMissingTopicsWithTheirPartitionCountAndLeavesExistingOnes() async throws {
        let servers = try #require(ProcessInfo.processInfo.environment["COURIER_TANSU_BOOTSTRAP"])
        let admin = try KafkaAdmin(bootstrapServers: servers, logger: KafkaMockHarness.quietLogger)
        let fresh = "admin.created.\(UInt32.random(in: 0...UInt32.max))"
        let existing = "admin.existing.\(UInt32.random(in: 0...UInt32.max))"
        #expect(try await admin.createTopics([.init(name: existing, partitions: 2, replicationFactor: 1)])
            == [existing: .created])
        #expect(try await admin.partitionCount(of: fresh) == nil)

        let outcome = try await admin.createTopics([
            KafkaTopicSpecification(name: fresh, partitions: 3, replicationFactor: 1),
            KafkaTopicSpecification(name: existing, partitions: 5, replicationFactor: 1),
        ])
        #expect(outcome == [fresh: .created, existing: .alreadyExisted])
        #expect(try await admin.partitionCount(of: fresh) == 3)
        #expect(try await admin.partitionCount(of: existing) == 2)
        #expect(try await admin.partitionCount(of: "admin.never.\(fresh)") == nil, "asking must not create it")
        #expect(try await admin.partitionCount(of: "admin.never.\(fresh)") == nil)
        await admin.close()
    }

    /// (The mock cluster creates any topic a metadata request names, so "unknown is nil" is checked on tansu.)
    @Test func readsPartitionCounts() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["existing": 2])
        defer { cluster.close() }
        let admin = try KafkaAdmin(bootstrapServers: cluster.bootstrapServers, logger: KafkaMockHarness.quietLogger)
        #expect(try await admin.partitionCount(of: "existing") == 2)
        await admin.close()
    }

    @Test func rejectsAnInvalidTopicNameBeforeContactingTheCluster() async throws {
        let admin = try KafkaAdmin(bootstrapServers: "127.0.0.1:1", logger: Self.silent)
        await #expect(throws: CourierError.self) {
            try await admin.createTopics([.init(name: "bad topic!", partitions: 1)])
        }
        await admin.close()
    }

    /// Counts are `Int`s (a `kafka://…?createTopics=` option is read as one) but librdkafka takes `Int32`: a count
    /// beyond it trapped in the conversion and ended the process. It must be refused as unprocessable instead.
    @Test func refusesCountsBeyondInt32InsteadOfTrapping() async {
        await #expect(processExitsWith: .success) {
            var silent = Logger(label: "courier.kafka.test")
            silent.logLevel = .critical
            let admin = try KafkaAdmin(bootstrapServers: "127.0.0.1:1", logger: silent)
            let tooMany = Int(Int32.max) + 1
            for topic in [KafkaTopicSpecification(name: "many", partitions: tooMany),
                          KafkaTopicSpecification(name: "many", partitions: 1, replicationFactor: tooMany)] {
                do {
                    _ = try await admin.createTopics([topic], timeout: .milliseconds(100))
                    exit(2)
                } catch let error as CourierError where error.code == .unprocessable {}
            }
            await admin.close()
        }
    }

    @Test func failsWithATimeoutWhenNoBrokerAnswers() async throws {
        let admin = try KafkaAdmin(bootstrapServers: "127.0.0.1:1", logger: Self.silent)
        let error = await #expect(throws: CourierError.self) {
            try await admin.createTopics([.init(name: "nowhere", partitions: 1)], timeout: .milliseconds(500))
        }
        #expect(error?.code == .timedOut || error?.code == .transportUnavailable, "\(String(describing: error))")
        await admin.close()
    }

    @Test func requestsAfterCloseFailAsUnavailable() async throws {
        let admin = try KafkaAdmin(bootstrapServers: "127.0.0.1:1", logger: Self.silent)
        await admin.close()
        let error = await #expect(throws: CourierError.self) {
            try await admin.createTopics([.init(name: "late", partitions: 1)])
        }
        #expect(error?.code == .transportUnavailable)
    }
}
