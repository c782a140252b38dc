//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierKafka
import Foundation
import Logging
import Synchronization
import Testing

/// Rebalances with records in flight, on the tansu broker (`COURIER_TANSU_BOOTSTRAP`, set by `scripts/test`).
///
/// Not on librdkafka's mock cluster: it refuses the commit a member makes while a rebalance is being prepared
/// (REBALANCE_IN_PROGRESS), which Kafka itself accepts.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["COURIER_TANSU_BOOTSTRAP"] != nil))
struct TansuRebalanceTests {
    /// The member losing the partitions holds the rebalance until their records finish, and commits them, so the
    /// new owner does not handle them again.
    @Test func aRebalanceWaitsForInFlightRecordsSoNoneIsHandledTwice() async throws {
        let servers = try #require(ProcessInfo.processInfo.environment["COURIER_TANSU_BOOTSTRAP"])
        let topic = "slow.work.\(UInt32.random(in: 0...UInt32.max))"
        let admin = try KafkaAdmin(bootstrapServers: servers, logger: KafkaMockHarness.quietLogger)
        try await admin.createTopics([.init(name: topic, partitions: 2, replicationFactor: 1)])
        await admin.close()

        let handled = Mutex<[(worker: String, n: Int)]>([])
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        func worker(_ name: String) -> (Microservice, KafkaServerTransport) {
            var configuration = KafkaConfiguration(bootstrapServers: servers, groupID: "\(topic).workers")
            configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
            var router = MessageRouter()
            router.onEvent(topic) { payload, _ in
                handled.withLock { $0.append((name, Int(payload.intValue ?? -1))) }
                try await Task.sleep(for: .seconds(2))
            }
            let transport = KafkaServerTransport(configuration: configuration, logger: logger)
            return (Microservice(router: router, transport: transport, logger: logger), transport)
        }
        func waitFor(_ count: Int) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while handled.withLock({ $0.count }) < count, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
        }
        let producer = try KafkaProducer(bootstrapServers: servers)
        let (first, firstTransport) = worker("first")
        let (second, secondTransport) = worker("second")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await first.run() }
            await firstTransport.waitUntilAssigned()
            for n in 0..<2 {
                _ = try await producer.send(topic: topic, partition: Int32(n), value: Array("\(n)".utf8))
            }
            try await waitFor(2)  // both records are now in the first worker's handlers
            group.addTask { try await second.run() }
            await secondTransport.waitUntilAssigned()
            for n in 2..<6 {
                _ = try await producer.send(topic: topic, partition: Int32(n % 2), value: Array("\(n)".utf8))
            }
            try await waitFor(6)
            try await Task.sleep(for: .seconds(1))  // room for a duplicate to show up
            group.cancelAll()
        }
        await producer.close()
        let records = handled.withLock { $0 }
        #expect(records.map(\.n).sorted() == Array(0..<6), "\(records)")
        #expect(records.prefix(2).allSatisfy { $0.worker == "first" }, "\(records)")
        #expect(Set(records.map(\.worker)).count == 2, "both members should get a partition: \(records)")
    }
}
