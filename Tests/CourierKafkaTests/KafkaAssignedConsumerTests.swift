//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Testing

@testable import CourierKafka

@Suite struct KafkaAssignedConsumerTests {
    /// The mock holds fetches for the full `fetch.wait.max.ms`; keep replies quick. `log_level` 3 hides the
    /// warning the mock provokes on every ready() (its Metadata API predates `allow.auto.create.topics`).
    static let fast = ["fetch.wait.max.ms": "10", "log_level": "3"]

    /// Reads up to `count` messages, closing the consumer if they have not all arrived within `timeout` (which ends
    /// the sequence, so a missing message fails the test instead of hanging it).
    static func take(
        _ count: Int,
        from consumer: KafkaAssignedConsumer,
        within timeout: Duration = .seconds(10)
    ) async -> [KafkaConsumerMessage] {
        await withTaskGroup(of: [KafkaConsumerMessage]?.self) { group in
            group.addTask {
                var messages: [KafkaConsumerMessage] = []
                var iterator = consumer.messages.makeAsyncIterator()
                while messages.count < count, let message = await iterator.next() { messages.append(message) }
                return messages
            }
            group.addTask {
                do { try await Task.sleep(for: timeout) } catch { return nil }
                await consumer.close()
                return nil
            }
            var result: [KafkaConsumerMessage] = []
            for await messages in group {
                if let messages {
                    result = messages
                    group.cancelAll()
                }
            }
            return result
        }
    }

    static func text(_ message: KafkaConsumerMessage) -> String {
        String(decoding: message.value ?? [], as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(1))) func skipsEverythingProducedBeforeReadyAndDeliversWhatFollowsInOrder()
        async throws
    {
        let cluster = try await EmbeddedKafkaCluster(topics: ["replies": 2])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<10 { try producer.produce(topic: "replies", partition: 0, value: Array("old-\(index)".utf8)) }
        try await producer.flush(timeout: .seconds(10))

        let listener = try KafkaAssignedConsumer(
            bootstrapServers: cluster.bootstrapServers,
            partitions: [KafkaTopicPartition(topic: "replies", partition: 0)],
            properties: Self.fast
        )
        try await listener.ready()
        for index in 0..<5 { try producer.produce(topic: "replies", partition: 0, value: Array("new-\(index)".utf8)) }
        try await producer.flush(timeout: .seconds(10))

        let messages = await Self.take(5, from: listener)
        #expect(messages.map(Self.text) == (0..<5).map { "new-\($0)" })
        #expect(messages.map(\.offset) == Array(10..<15))
        #expect(messages.allSatisfy { $0.topic == "replies" && $0.partition == 0 })
        await listener.close()
        await producer.close()
    }

    @Test(.timeLimit(.minutes(1))) func listenersOnDifferentPartitionsReceiveOnlyTheirOwn() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["replies": 2])
        defer { cluster.close() }
        let listeners = try (0..<Int32(2)).map { partition in
            try KafkaAssignedConsumer(
                bootstrapServers: cluster.bootstrapServers,
                partitions: [KafkaTopicPartition(topic: "replies", partition: partition)],
                properties: Self.fast
            )
        }
        for listener in listeners { try await listener.ready() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<200 {
            try producer.produce(topic: "replies", partition: Int32(index % 2), value: Array("\(index)".utf8))
        }
        try await producer.flush(timeout: .seconds(10))
        await producer.close()

        async let zero = Self.take(100, from: listeners[0])
        async let one = Self.take(100, from: listeners[1])
        let received = await [zero, one]
        for partition in 0..<2 {
            let messages = received[partition]
            #expect(messages.allSatisfy { $0.partition == Int32(partition) }, "partition \(partition)")
            let expected = stride(from: partition, to: 200, by: 2).map { "\($0)" }
            #expect(messages.map(Self.text) == expected, "partition \(partition) in order, nothing missing")
            #expect(messages.map(\.offset) == Array(0..<100), "partition \(partition)")
        }
        for listener in listeners { await listener.close() }
    }

    @Test(.timeLimit(.minutes(1))) func aMessageProducedRightAfterReadyIsAlwaysReceived() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["replies": 1])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for round in 0..<5 {
            // Something older in the partition each round, which must not come first.
            _ = try await producer.send(topic: "replies", partition: 0, value: Array("stale-\(round)".utf8))
            let listener = try KafkaAssignedConsumer(
                bootstrapServers: cluster.bootstrapServers,
                partitions: [KafkaTopicPartition(topic: "replies", partition: 0)],
                properties: Self.fast
            )
            try await listener.ready()
            // Without waiting for anything: the first request's reply.
            try producer.produce(topic: "replies", partition: 0, value: Array("first-\(round)".utf8))
            let messages = await Self.take(1, from: listener)
            #expect(messages.map(Self.text) == ["first-\(round)"], "round \(round)")
            await listener.close()
        }
        await producer.close()
    }

    @Test(.timeLimit(.minutes(1))) func aMissingTopicOrPartitionFailsReadyNamingIt() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["replies": 1])
        defer { cluster.close() }
        // The mock would auto-create it; a real broker with auto-creation off answers like this.
        try await cluster.simulateMissingTopic("no-such-replies")
        for (topic, partition) in [("no-such-replies", Int32(0)), ("replies", 3)] {
            let listener = try KafkaAssignedConsumer(
                bootstrapServers: cluster.bootstrapServers,
                partitions: [KafkaTopicPartition(topic: topic, partition: partition)],
                properties: Self.fast,
                readyTimeout: .seconds(3)
            )
            let error = await #expect(throws: CourierError.self) { try await listener.ready() }
            #expect(error?.code == .transportUnavailable)
            let message = error?.message ?? ""
            #expect(message.contains("'\(topic)'") && message.contains("reply topics must be created"), "\(message)")
            print("\(topic)[\(partition)]: \(message)")
            await listener.close()
        }
    }

    @Test(.timeLimit(.minutes(1))) func closeIsIdempotentEndsTheMessagesAndFailsReady() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["replies": 1])
        defer { cluster.close() }
        let listener = try KafkaAssignedConsumer(
            bootstrapServers: cluster.bootstrapServers,
            partitions: [KafkaTopicPartition(topic: "replies", partition: 0)],
            properties: Self.fast
        )
        try await listener.ready()
        try await listener.ready()
        let reader = Task {
            var count = 0
            for await _ in listener.messages { count += 1 }
            return count
        }
        async let first: Void = listener.close()
        async let second: Void = listener.close()
        _ = await (first, second)
        await listener.close()
        #expect(await reader.value == 0)
        let error = await #expect(throws: CourierError.self) { try await listener.ready() }
        #expect(error?.code == .transportUnavailable)
    }

    @Test func rejectsBadArguments() throws {
        let servers = "127.0.0.1:9"
        let partition = KafkaTopicPartition(topic: "replies", partition: 0)
        #expect(throws: CourierError.self) { try KafkaAssignedConsumer(bootstrapServers: servers, partitions: []) }
        #expect(throws: CourierError.self) {
            try KafkaAssignedConsumer(bootstrapServers: servers, partitions: [partition, partition])
        }
        #expect(throws: CourierError.self) {
            try KafkaAssignedConsumer(bootstrapServers: servers, partitions: [partition], readyTimeout: .zero)
        }
        #expect(throws: CourierError.self) {
            try KafkaAssignedConsumer(bootstrapServers: servers, partitions: [partition], properties: ["group.id": ""])
        }
    }
}
