//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Courier
import CourierTestSupport
import Logging
import NIOCore
import Synchronization
import Testing

@testable import CourierKafka

/// A worker's partition lane starts the next record's handler without waiting for the broker to acknowledge the
/// previous record's reply, yet stores offsets strictly in order.
@Suite struct KafkaPipeliningTests {
    @Test func aPendingReplyDoesNotHoldBackTheNextHandlerButHoldsBackItsOffset() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 2])
        defer { cluster.close() }
        let handled = Mutex<[Int]>([])
        let worker = Self.echoWorker(cluster, group: "pipe-workers") { value in handled.withLock { $0.append(value) } }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        // The first request's reply goes to a partition without a leader: its delivery stays pending.
        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await Self.sendTwoRequests(producer)
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
            try await cluster.setLeader(of: "pipe.replies", partition: 0, to: 1)
            let committed = try await Self.committedOffset(cluster, group: "pipe-workers", reaching: 2)
            #expect(committed == 2)
            group.cancelAll()
        }
        await producer.close()
    }

    /// A request whose reply cannot reach the broker (its reply partition has no leader until the producer's
    /// `message.timeout.ms` passes) is handled again in place until its reply is delivered: its partition goes on
    /// once the broker takes the reply, without a restart or a rebalance, and no later offset is stored before it.
    @Test func aRecordWhoseReplyTimedOutIsHandledAgainUntilItsReplyIsDelivered() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 2])
        defer { cluster.close() }
        let runs = Mutex<[Int: Int]>([:])
        let worker = Self.echoWorker(cluster, group: "again-workers", configure: Self.redeliverQuickly) { value in
            runs.withLock { $0[value, default: 0] += 1 }
        }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await Self.sendTwoRequests(producer)
            // The first reply times out and its record is handled again, more than once while the partition has
            // no leader; the second record's offset waits for it.
            for _ in 0..<300 where runs.withLock({ $0[1, default: 0] }) < 3 {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(runs.withLock { $0[1, default: 0] } >= 3)
            #expect(runs.withLock { $0[2, default: 0] } == 1)
            #expect(try await Self.committedOffset(cluster, group: "again-workers") < 0)

            // Once the partition has a leader again, the next attempt's reply is delivered and both offsets are
            // committed, with no restart or rebalance.
            try await cluster.setLeader(of: "pipe.replies", partition: 0, to: 1)
            let committed = try await Self.committedOffset(cluster, group: "again-workers", reaching: 2)
            #expect(committed == 2)
            let replies = try await offThePool {
                try readBlocking(bootstrapServers: cluster.bootstrapServers, topic: "pipe.replies", partitions: 2,
                                 count: 2, timeout: 30)
            }
            #expect(Set(replies.map(\.value)) == [Array("1".utf8), Array("2".utf8)])
            #expect(runs.withLock { $0[2, default: 0] } == 1)
            group.cancelAll()
        }
        await producer.close()
    }

    /// A worker stops handling a record again once the record's partition is revoked: the partition's next owner
    /// handles it, and the revocation is not held up (until `revocationTimeout`) while the broker cannot take the
    /// record's reply. Two records, one per partition, are being handled again when a second worker joins; each
    /// worker then owns one partition, and the first no longer handles the record of the partition it lost.
    @Test func aRevokedPartitionsRecordIsLeftToItsNextOwner() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 2, "pipe.replies": 2])
        defer { cluster.close() }
        let runs = Mutex<[String: Int]>([:])
        func worker(_ name: String) -> Microservice {
            Self.echoWorker(cluster, group: "revoked-workers", configure: { configuration in
                Self.redeliverQuickly(&configuration)
                configuration.revocationTimeout = .seconds(30)
            }) { value in runs.withLock { $0["\(name) \(value)", default: 0] += 1 } }
        }
        func count(_ key: String) -> Int { runs.withLock { $0[key, default: 0] } }
        let (first, second) = (worker("first"), worker("second"))
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await first.run() }
            try await Self.sendRequests([(1, 0), (2, 1)], with: producer)
            // Both replies time out: the first worker handles both records again, and again.
            try await Self.wait(atMost: 30) { count("first 1") >= 2 && count("first 2") >= 2 }
            #expect(count("first 1") >= 2 && count("first 2") >= 2)
            group.addTask { try await second.run() }
            try await Self.wait(atMost: 60) { count("second 1") + count("second 2") > 0 }
            let lost = count("second 1") > 0 ? 1 : 2
            #expect(count("second \(lost)") > 0)
            try await Task.sleep(for: .seconds(1))
            let before = count("first \(lost)")
            try await Task.sleep(for: .seconds(3))  // an attempt about every 1.3 s (the timeout scan, the backoff)
            #expect(count("first \(lost)") == before, "the first worker still handles the record it lost")
            #expect(count("second \(lost)") > 1, "its new owner handles it again")
            group.cancelAll()
        }
        await producer.close()
    }

    /// The same when the worker's record budget is spent: the records being handled again hold every permit
    /// (`maxBufferedRecords` 2), so the worker's reader waits for a permit with a third record in hand and does not
    /// reach the revocation behind it. The worker must still stop handling the record of the partition it lost
    /// (its next owner handles it), instead of doing so until the broker takes the reply.
    @Test func aRevokedPartitionsRecordIsLeftToItsNextOwnerWhileTheBudgetIsSpent() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 2, "pipe.replies": 2])
        defer { cluster.close() }
        let runs = Mutex<[String: Int]>([:])
        func worker(_ name: String) -> Microservice {
            Self.echoWorker(cluster, group: "spent-workers", configure: { configuration in
                Self.redeliverQuickly(&configuration)
                configuration.revocationTimeout = .seconds(5)
                configuration.maxBufferedRecords = 2
            }) { value in runs.withLock { $0["\(name) \(value)", default: 0] += 1 } }
        }
        func count(_ key: String) -> Int { runs.withLock { $0[key, default: 0] } }
        let (first, second) = (worker("first"), worker("second"))
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await first.run() }
            try await Self.sendRequests([(1, 0), (2, 1), (3, 0)], with: producer)
            try await Self.wait(atMost: 30) { count("first 1") >= 2 && count("first 2") >= 2 }
            #expect(count("first 1") >= 2 && count("first 2") >= 2)
            group.addTask { try await second.run() }
            try await Self.wait(atMost: 60) { count("second 1") + count("second 2") > 0 }
            let lost = count("second 1") > 0 ? 1 : 2
            #expect(count("second \(lost)") > 0)
            try await Task.sleep(for: .seconds(1))
            let before = count("first \(lost)")
            try await Task.sleep(for: .seconds(3))
            #expect(count("first \(lost)") == before, "the first worker still handles the record it lost")
            group.cancelAll()
        }
        await producer.close()
    }

    /// A lane stores the offsets of events it handled one after another once per run (and every
    /// `storeEvery` records): after the last of a run that is not a multiple of it, the whole run is committed.
    @Test func aRunOfHandledEventsIsCommittedToItsLastRecord() async throws {
        let count = KafkaServerTransport.storeEvery * 2 + 5
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1])
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
            let committed = try await Self.committedOffset(cluster, group: "run-workers", reaching: Int64(count))
            #expect(handled.load(ordering: .relaxed) == count)
            #expect(committed == Int64(count))
            group.cancelAll()
        }
        await producer.close()
    }

    /// A worker of group `group` (fast group settings, committing every 50 ms) whose `pipe.req` handler calls
    /// `handled` with the request's number and replies with it.
    static func echoWorker(
        _ cluster: EmbeddedKafkaCluster,
        group: String,
        configure: (inout KafkaConfiguration) -> Void = { _ in },
        microservice: MicroserviceConfiguration = .init(),
        handled: @escaping @Sendable (Int) -> Void
    ) -> Microservice {
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: group)
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.consumerProperties["auto.commit.interval.ms"] = "50"
        configure(&configuration)
        var router = MessageRouter()
        router.on(MessagePattern<Int, Int>("pipe.req")) { value, _ in
            handled(value)
            return value
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = KafkaServerTransport(configuration: configuration, logger: logger)
        return Microservice(router: router, transport: server, configuration: microservice, logger: logger)
    }

    /// Replies time out 300 ms after they were produced (librdkafka notices within about a second), and a record
    /// whose reply timed out is handled again after 100 ms, then every 200 ms.
    /// Sends a request to `pipe.req` for each value, on the partition given, with replies to `pipe.replies`'s
    /// partition 0 (correlation id `c<value>`).
    static func sendRequests(_ requests: [(value: Int, partition: Int32)], with producer: KafkaProducer) async throws {
        for (value, partition) in requests {
            let request = WireRequest(pattern: "pipe.req", payload: ByteBuffer(string: "\(value)"),
                                      correlationID: "c\(value)")
            let record = try KafkaRecordCodec.encodeRequest(request, replyTo: .init(topic: "pipe.replies", partition: 0))
            _ = try await producer.send(topic: record.topic, partition: partition, value: record.value,
                                        headers: record.producerHeaders)
        }
    }

    /// Polls `condition` every 100 ms for at most `seconds`.
    static func wait(atMost seconds: Int, until condition: () -> Bool) async throws {
        for _ in 0..<(seconds * 10) where !condition() { try await Task.sleep(for: .milliseconds(100)) }
    }

    static func redeliverQuickly(_ configuration: inout KafkaConfiguration) {
        configuration.producerProperties["message.timeout.ms"] = "300"
        configuration.redeliveryBackoff = .milliseconds(100)
        configuration.maxRedeliveryBackoff = .milliseconds(200)
    }

    /// Requests 1 and 2 to `pipe.req`, replies to `pipe.replies` partitions 0 and 1.
    static func sendTwoRequests(_ producer: KafkaProducer) async throws {
        for (value, replyPartition) in [(1, Int32(0)), (2, Int32(1))] {
            let request = WireRequest(pattern: "pipe.req", payload: ByteBuffer(string: "\(value)"),
                                      correlationID: "c\(value)")
            let record = try KafkaRecordCodec.encodeRequest(
                request, replyTo: .init(topic: "pipe.replies", partition: replyPartition)
            )
            _ = try await producer.send(topic: record.topic, value: record.value, headers: record.producerHeaders)
        }
    }

    /// The group's committed offset of `pipe.req` partition 0 once it is `target`, or the last one read after 30 s.
    static func committedOffset(_ cluster: EmbeddedKafkaCluster, group: String, reaching target: Int64) async throws
        -> Int64
    {
        var committed: Int64 = -1
        for _ in 0..<300 where committed != target {
            try await Task.sleep(for: .milliseconds(100))
            committed = try await committedOffset(cluster, group: group)
        }
        return committed
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
