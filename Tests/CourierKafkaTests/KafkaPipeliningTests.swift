//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Courier
import Logging
import NIOCore
import Synchronization
import Testing

@testable import CourierKafka

/// A worker's partition lane starts the next record's handler without waiting for the broker to acknowledge the
/// previous record's reply, yet stores offsets strictly in order.
@Suite struct KafkaPipeliningTests {
    @Test func aPendingReplyDoesNotHoldBackTheNextHandlerButHoldsBackItsOffset() async throws {
        let cluster = try EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 2])
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "pipe-workers")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.consumerProperties["auto.commit.interval.ms"] = "50"
        let handled = Mutex<[Int]>([])
        var router = MessageRouter()
        router.on(MessagePattern<Int, Int>("pipe.req")) { value, _ in
            handled.withLock { $0.append(value) }
            return value
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = KafkaServerTransport(configuration: configuration, logger: logger)
        let worker = Microservice(router: router, transport: server, logger: logger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        // The first request's reply goes to a partition without a leader: its delivery stays pending.
        try cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            for (value, replyPartition) in [(1, Int32(0)), (2, Int32(1))] {
                let request = WireRequest(pattern: "pipe.req", payload: ByteBuffer(string: "\(value)"),
                                          correlationID: "c\(value)")
                let record = try KafkaRecordCodec.encodeRequest(
                    request, replyTo: .init(topic: "pipe.replies", partition: replyPartition)
                )
                _ = try await producer.send(topic: record.topic, value: record.value, headers: record.producerHeaders)
            }
            // The second record's handler ran and its reply reached the broker while the first reply is pending.
            let second = try await offThePool {
                try readBlocking(bootstrapServers: cluster.bootstrapServers, topic: "pipe.replies", partitions: 2,
                                 count: 1, timeout: 30)
            }
            #expect(second.map(\.value) == [Array("2".utf8)])
            #expect(handled.withLock { $0 } == [1, 2])
            // Record 1 is not done, so no offset of the partition was stored: record 2's must not be committed.
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await Self.committedOffset(cluster, group: "pipe-workers") < 0)

            // Once the first reply is delivered, both offsets are stored and committed.
            try cluster.setLeader(of: "pipe.replies", partition: 0, to: 1)
            var committed: Int64 = -1
            for _ in 0..<300 where committed != 2 {
                try await Task.sleep(for: .milliseconds(100))
                committed = try await Self.committedOffset(cluster, group: "pipe-workers")
            }
            #expect(committed == 2)
            group.cancelAll()
        }
        await producer.close()
    }

    /// A lane stores the offsets of events it handled one after another once per run (and every
    /// `storeEvery` records): after the last of a run that is not a multiple of it, the whole run is committed.
    @Test func aRunOfHandledEventsIsCommittedToItsLastRecord() async throws {
        let count = KafkaServerTransport.storeEvery * 2 + 5
        let cluster = try EmbeddedKafkaCluster(topics: ["pipe.req": 1])
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "run-workers")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.consumerProperties["auto.commit.interval.ms"] = "50"
        let handled = Atomic<Int>(0)
        var router = MessageRouter()
        router.on(EventPattern<Int>("pipe.req")) { _, _ in
            handled.add(1, ordering: .relaxed)
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = KafkaServerTransport(configuration: configuration, logger: logger)
        let worker = Microservice(router: router, transport: server, logger: logger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for value in 0..<count {
            try producer.produce(topic: "pipe.req", key: nil, value: Array("\(value)".utf8), headers: [])
        }
        try await producer.flush(timeout: .seconds(10))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            var committed: Int64 = -1
            for _ in 0..<300 where committed != Int64(count) {
                try await Task.sleep(for: .milliseconds(100))
                committed = try await Self.committedOffset(cluster, group: "run-workers")
            }
            #expect(handled.load(ordering: .relaxed) == count)
            #expect(committed == Int64(count))
            group.cancelAll()
        }
        await producer.close()
    }

    /// The group's committed offset of `pipe.req` partition 0 (negative when nothing is committed).
    static func committedOffset(_ cluster: EmbeddedKafkaCluster, group: String) async throws -> Int64 {
        let servers = cluster.bootstrapServers
        return try await offThePool {
            let consumer = try makeRawConsumer(["bootstrap.servers": servers, "group.id": group])
            defer { rd_kafka_destroy(consumer) }
            let list = rd_kafka_topic_partition_list_new(1)!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            rd_kafka_topic_partition_list_add(list, "pipe.req", 0)
            let err = rd_kafka_committed(consumer, list, 5_000)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw ReaderError(description: "rd_kafka_committed: \(String(cString: rd_kafka_err2str(err)))")
            }
            return list.pointee.elems[0].offset
        }
    }
}
