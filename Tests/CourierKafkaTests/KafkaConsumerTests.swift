//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Testing

@testable import CourierKafka

@Suite struct KafkaConsumerTests {
    /// Settings that keep the mock cluster's group joins and fetches quick (see EmbeddedKafkaCluster).
    static let fastGroup = [
        "auto.offset.reset": "earliest",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "fetch.wait.max.ms": "10",
        "auto.commit.interval.ms": "100",
    ]

    @Test func deliversAssignmentMessagesAndRevocationInOrderThenCommits() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["orders": 4])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<100 {
            let message = KafkaProducerTests.message(index)
            try producer.produce(topic: "orders", key: message.key, value: message.value, headers: message.headers)
        }
        try await producer.flush(timeout: .seconds(10))

        let consumer = try KafkaConsumer(
            bootstrapServers: cluster.bootstrapServers,
            groupID: "readers",
            topics: ["orders"],
            properties: Self.fastGroup
        )
        var events: [KafkaConsumerEvent] = []
        var received = 0
        var iterator = consumer.events.makeAsyncIterator()
        while received < 100, let event = await iterator.next() {
            events.append(event)
            if let message = event.message {
                received += 1
                try consumer.storeOffset(message)
            }
        }
        await consumer.close()
        while let event = await iterator.next() { events.append(event) }

        let all = Set((0..<4).map { KafkaTopicPartition(topic: "orders", partition: $0) })
        #expect(Set(events.first?.assigned ?? []) == all)
        #expect(Set(events.last?.revoked ?? []).count == 4, "\(String(describing: events.last))")
        let messages = events.compactMap(\.message)
        #expect(messages.count == 100)
        for message in messages {
            let index = Int(String(decoding: message.key ?? [], as: UTF8.self).dropFirst("key-".count)) ?? -1
            let sent = KafkaProducerTests.message(index)
            #expect(message.topic == "orders")
            #expect(message.value == sent.value)
            #expect(message.headers == sent.headers.map { .init(name: $0.0, value: $0.1) })
        }
        for partition in 0..<Int32(4) {
            let offsets = messages.filter { $0.partition == partition }.map(\.offset)
            #expect(offsets == Array(0..<Int64(offsets.count)), "partition \(partition) in order, no gaps")
        }

        // Everything was stored, so a new member of the group starts after it.
        _ = try await producer.send(topic: "orders", partition: 1, value: Array("later".utf8))
        await producer.close()
        let second = try KafkaConsumer(
            bootstrapServers: cluster.bootstrapServers,
            groupID: "readers",
            topics: ["orders"],
            properties: Self.fastGroup
        )
        var first: KafkaConsumerMessage?
        for await event in second.events {
            if let message = event.message {
                first = message
                break
            }
        }
        await second.close()
        #expect(first?.value == Array("later".utf8))
    }

    @Test func pausesWhenTheReaderFallsBehindAndLosesNothing() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["backlog": 1])
        defer { cluster.close() }
        let consumer = try await Self.backlogConsumer(cluster, pauseDelay: .milliseconds(50))
        #expect(try await Self.readAfterStalling(consumer, count: 600, for: .milliseconds(500)) == Array(0..<600))
        #expect(consumer.pauseCount >= 1)
        await consumer.close()
    }

    @Test func aReaderBehindForLessThanThePauseDelayIsWaitedForWithoutPausing() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["backlog": 1])
        defer { cluster.close() }
        let consumer = try await Self.backlogConsumer(cluster, pauseDelay: .seconds(60))
        #expect(try await Self.readAfterStalling(consumer, count: 600, for: .milliseconds(500)) == Array(0..<600))
        #expect(consumer.pauseCount == 0)
        await consumer.close()
    }

    /// A consumer with watermarks 20/100 of topic `backlog`, which holds 600 messages whose values are their offsets.
    private static func backlogConsumer(_ cluster: EmbeddedKafkaCluster, pauseDelay: Duration) async throws
        -> KafkaConsumer
    {
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<600 { try producer.produce(topic: "backlog", value: Array("\(index)".utf8)) }
        await producer.close()
        return try KafkaConsumer(
            bootstrapServers: cluster.bootstrapServers,
            groupID: "slow",
            topics: ["backlog"],
            properties: fastGroup,
            lowWatermark: 20,
            highWatermark: 100,
            pauseDelay: pauseDelay
        )
    }

    /// Reads `count` messages' offsets, checking each value, after stopping for `stall` once assigned (so the
    /// buffer passes the high watermark).
    private static func readAfterStalling(
        _ consumer: KafkaConsumer,
        count: Int,
        for stall: Duration
    ) async throws -> [Int64] {
        var iterator = consumer.events.makeAsyncIterator()
        var offsets: [Int64] = []
        var stalled = false
        while offsets.count < count, let event = await iterator.next() {
            if !stalled, event.assigned != nil {
                stalled = true
                try await Task.sleep(for: stall)
            }
            if let message = event.message {
                offsets.append(message.offset)
                #expect(message.value == Array("\(message.offset)".utf8))
            }
        }
        return offsets
    }

    @Test func storingAfterCloseThrows() async throws {
        let cluster = try await EmbeddedKafkaCluster()
        defer { cluster.close() }
        let consumer = try KafkaConsumer(bootstrapServers: cluster.bootstrapServers, groupID: "g", topics: ["t"])
        await consumer.close()
        await consumer.close()
        var iterator = consumer.events.makeAsyncIterator()
        #expect(await iterator.next() == nil)
        let message = KafkaConsumerMessage(topic: "t", partition: 0, offset: 0, key: nil, value: nil, headers: [])
        let error = #expect(throws: CourierError.self) { try consumer.storeOffset(message) }
        #expect(error?.code == .transportUnavailable)
    }
}
