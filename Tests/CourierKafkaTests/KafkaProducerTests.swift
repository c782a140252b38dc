//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import CourierTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@testable import CourierKafka

@Suite struct KafkaProducerTests {
    static func message(_ index: Int) -> (key: [UInt8], value: [UInt8], headers: [(String, [UInt8])]) {
        (
            Array("key-\(index)".utf8),
            Array("value-\(index)".utf8) + [0, 255, UInt8(index % 256)],
            [("trace-id", Array("trace-\(index)".utf8)), ("bytes", [0, 1, 2, UInt8(index % 256)])]
        )
    }

    @Test func sendReportsDistinctOffsetsAndTheBytesReadBackExactly() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["events": 4])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, properties: ["linger.ms": "1"])
        let reports = try await withThrowingTaskGroup(of: (Int, KafkaDeliveryReport).self) { group in
            for index in 0..<100 {
                group.addTask {
                    let message = Self.message(index)
                    let report = try await producer.send(
                        topic: "events",
                        key: message.key,
                        value: message.value,
                        headers: message.headers
                    )
                    return (index, report)
                }
            }
            var reports: [Int: KafkaDeliveryReport] = [:]
            for try await (index, report) in group { reports[index] = report }
            return reports
        }
        await producer.close()

        #expect(reports.count == 100)
        #expect(Set(reports.values.map { "\($0.partition)/\($0.offset)" }).count == 100)
        #expect(reports.values.allSatisfy { $0.topic == "events" && (0..<4).contains($0.partition) })
        #expect(Set(reports.values.map(\.partition)).count > 1, "keys should spread over partitions")

        let servers = cluster.bootstrapServers
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "events", partitions: 4, count: 100)
        }
        #expect(read.count == 100)
        for message in read {
            let key = String(decoding: message.key ?? [], as: UTF8.self)
            guard let index = Int(key.dropFirst("key-".count)), let report = reports[index] else {
                Issue.record("unexpected key \(key)")
                continue
            }
            let sent = Self.message(index)
            #expect(message.value == sent.value)
            #expect(message.headers.map(\.name) == sent.headers.map(\.0))
            #expect(message.headers.map(\.value) == sent.headers.map { Optional($0.1) })
            #expect(message.partition == report.partition && message.offset == report.offset)
        }
    }

    /// librdkafka can hold the first messages to a topic it has no metadata for until its once-a-second scan of
    /// unknown topics; the producer looks each new topic up at once instead. Sent one after another (once the
    /// producer is connected), ten new topics' first messages take about 10 s when each waits for a scan, and
    /// milliseconds when none does (seconds on a loaded machine, hence the bound of 5 s).
    @Test func firstMessagesToNewTopicsAreNotHeldForLibrdkafkasTopicScan() async throws {
        let topics = (0..<10).map { "fresh-\($0)" }
        let cluster = try await EmbeddedKafkaCluster(
            topics: Dictionary(uniqueKeysWithValues: (topics + ["warm-up"]).map { ($0, 1) })
        )
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers, properties: ["linger.ms": "1"])
        // Connecting takes its own time on a busy machine; it is not what this test is about.
        _ = try await producer.send(topic: "warm-up", value: [0])
        let clock = ContinuousClock()
        let elapsed = try await clock.measure {
            for topic in topics {
                _ = try await producer.send(topic: topic, value: Array(topic.utf8))
            }
        }
        #expect(producer.topicsProducedTo == Set(topics + ["warm-up"]))
        await producer.close()
        #expect(elapsed < .seconds(5), "ten first messages took \(elapsed)")
    }

    /// With no broker to answer, the first look-up fails after its 1 s timeout and the other new topics are left to
    /// librdkafka's own scan, so the poll thread (which also closes the producer) is not held a second per topic.
    /// Counted rather than timed: six look-ups would make six requests (and hold the poll thread 6 s).
    @Test func unansweredLookUpsDoNotHoldThePollThreadATopicAtATime() async throws {
        // Nothing listens on port 1: connections are refused at once, and no metadata ever comes.
        let producer = try KafkaProducer(bootstrapServers: "127.0.0.1:1", properties: ["linger.ms": "1"])
        let topics = (0..<6).map { "unreachable-\($0)" }
        for topic in topics { try producer.produce(topic: topic, value: [1]) }
        #expect(producer.topicsProducedTo == Set(topics))
        // The poll thread takes the pending topics up (in one batch or more) before the producer closes.
        let end = ContinuousClock.now + .seconds(10)
        while producer.topicLookupCounts.pending > 0, ContinuousClock.now < end {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(producer.topicLookupCounts.pending == 0)
        await producer.close(flushTimeout: .milliseconds(100))
        #expect(producer.topicLookupCounts.requests == 1)
    }

    /// After a failed look-up, the new topics that came meanwhile (and any in the next second) are left to
    /// librdkafka's scan too, rather than holding the poll thread for another second.
    @Test func newTopicsRightAfterAFailedLookUpAreNotLookedUp() async throws {
        let producer = try KafkaProducer(bootstrapServers: "127.0.0.1:1", properties: ["linger.ms": "1"])
        let clock = ContinuousClock()
        func waitFor(_ condition: () -> Bool) async throws {
            let end = clock.now + .seconds(5)
            while !condition(), clock.now < end { try await Task.sleep(for: .milliseconds(5)) }
        }
        try producer.produce(topic: "unreachable-first", value: [1])
        // On a thread of its own, so that a busy task pool cannot delay it past the pause: once the first look-up is
        // under way (it fails after its 1 s timeout), the other topics come while it waits, in a batch of their own.
        let later: Result<Void, any Error> = await withCheckedContinuation { continuation in
            Thread {
                while producer.topicLookupCounts.requests < 1 { usleep(1_000) }
                continuation.resume(returning: Result {
                    for index in 0..<5 { try producer.produce(topic: "unreachable-later-\(index)", value: [1]) }
                })
            }.start()
        }
        try later.get()
        try await waitFor { producer.topicLookupCounts.pending == 0 }
        // A look-up the poll thread took up would have started by now.
        try await Task.sleep(for: .milliseconds(300))
        #expect(producer.topicLookupCounts.requests == 1)
        await producer.close(flushTimeout: .milliseconds(100))
    }

    @Test func sendAndProduceWhenRoomWaitForAFullQueueWhereProduceFails() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["narrow": 1])
        defer { cluster.close() }
        // Room for 5 messages, and each batch waits 20 ms: concurrent senders find the queue full.
        let producer = try KafkaProducer(
            bootstrapServers: cluster.bootstrapServers,
            properties: ["queue.buffering.max.messages": "5", "linger.ms": "20"]
        )
        var full: CourierError?
        for index in 0..<6 {
            do {
                try producer.produce(topic: "narrow", value: [UInt8(index)])
            } catch let error as CourierError {
                full = error
            }
        }
        #expect(full?.code == .transportUnavailable)
        #expect(full?.message.contains("Queue full") == true)
        try await producer.flush(timeout: .seconds(10))

        let offsets = try await withThrowingTaskGroup(of: Int64.self) { group in
            for index in 0..<60 {
                group.addTask {
                    if index.isMultiple(of: 2) {
                        return try await producer.send(topic: "narrow", value: [UInt8(index)]).offset
                    }
                    try await producer.produceWhenRoom(topic: "narrow", value: [UInt8(index)])
                    return -1
                }
            }
            var offsets: [Int64] = []
            for try await offset in group where offset >= 0 { offsets.append(offset) }
            return offsets
        }
        #expect(offsets.count == 30)
        try await producer.flush(timeout: .seconds(10))
        await producer.close()
        let servers = cluster.bootstrapServers
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "narrow", partitions: 1, count: 65)
        }
        #expect(read.count == 65)
    }

    @Test func produceThenFlushEmptiesTheQueue() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["flushed": 2])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        var ids: Set<UInt64> = []
        for index in 0..<50 {
            ids.insert(try producer.produce(topic: "flushed", partition: Int32(index % 2), value: [UInt8(index)]))
        }
        #expect(ids.count == 50)
        try await producer.flush(timeout: .seconds(10))
        #expect(producer.withUnsafeHandle { rd_kafka_outq_len($0) } == 0)
        await producer.close()
        await producer.close()

        let servers = cluster.bootstrapServers
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "flushed", partitions: 2, count: 50)
        }
        #expect(Set(read.compactMap { $0.value?.first }) == Set((0..<50).map { UInt8($0) }))
        #expect(read.allSatisfy { $0.partition == Int32($0.value![0] % 2) && $0.key == nil })
    }

    @Test func closeFromACancelledTaskStillDeliversWhatIsQueued() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["cancelled-close": 1])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<200 { try producer.produce(topic: "cancelled-close", value: [UInt8(index % 256)]) }
        let closing = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await producer.close()
        }
        await closing.value

        let servers = cluster.bootstrapServers
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "cancelled-close", partitions: 1, count: 200)
        }
        #expect(read.map(\.offset) == Array(0..<200))
    }

    @Test func concurrentClosesBothWaitForTheFlush() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["closing": 1])
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        for index in 0..<200 { try producer.produce(topic: "closing", value: [UInt8(index % 256)]) }
        async let first: Void = producer.close()
        async let second: Void = producer.close()
        _ = await (first, second)

        let servers = cluster.bootstrapServers
        let read = try await offThePool {
            try readBlocking(bootstrapServers: servers, topic: "closing", partitions: 1, count: 200)
        }
        #expect(read.map(\.offset) == Array(0..<200))
    }

    @Test func everythingFailsAfterClose() async throws {
        let cluster = try await EmbeddedKafkaCluster()
        defer { cluster.close() }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        let report = try await producer.send(topic: "before", value: [1])
        #expect(report.offset == 0)
        await producer.close()

        let sendError = await #expect(throws: CourierError.self) {
            _ = try await producer.send(topic: "after", value: [1])
        }
        #expect(sendError?.code == .transportUnavailable)
        let produceError = #expect(throws: CourierError.self) { try producer.produce(topic: "after", value: [1]) }
        #expect(produceError?.code == .transportUnavailable)
        let flushError = await #expect(throws: CourierError.self) { try await producer.flush(timeout: .seconds(1)) }
        #expect(flushError?.code == .transportUnavailable)
    }

    /// A producer whose queue holds one message and whose broker does not exist (nothing listens on port 1): once
    /// it holds a message, its queue stays full.
    static func stuckProducer() throws -> KafkaProducer {
        var quiet = Logger(label: "courier.kafka.test")
        quiet.logLevel = .critical
        return try KafkaProducer(
            bootstrapServers: "127.0.0.1:1",
            properties: ["queue.buffering.max.messages": "1"],
            logger: quiet
        )
    }

    @Test func aFullQueueThrowsAtOnce() async throws {
        let producer = try Self.stuckProducer()
        try producer.produce(topic: "nowhere", value: [1])
        let error = #expect(throws: CourierError.self) { try producer.produce(topic: "nowhere", value: [2]) }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.contains("-184") == true, "\(String(describing: error))")
        await producer.close(flushTimeout: .zero)
    }

    @Test func waitingForRoomGivesUpAtItsDeadline() async throws {
        let producer = try Self.stuckProducer()
        try producer.produce(topic: "nowhere", value: [1])
        let clock = ContinuousClock()
        let start = clock.now
        let error = await #expect(throws: CourierError.self) {
            try await producer.produceWhenRoom(topic: "nowhere", partition: nil, key: nil, value: [2], headers: [],
                                               onDelivery: nil, until: start + .milliseconds(200))
        }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.contains("-184") == true, "\(String(describing: error))")
        #expect(start.duration(to: clock.now) >= .milliseconds(200))
        await producer.close(flushTimeout: .zero)
    }

    @Test func closeFailsSendsThatCannotBeDelivered() async throws {
        // Nothing listens on port 1, so the message can only wait in librdkafka's queue.
        var quiet = Logger(label: "courier.kafka.test")
        quiet.logLevel = .critical
        let producer = try KafkaProducer(bootstrapServers: "127.0.0.1:1", logger: quiet)
        async let outcome: Result<KafkaDeliveryReport, any Error> = {
            do {
                return .success(try await producer.send(topic: "nowhere", value: [1]))
            } catch {
                return .failure(error)
            }
        }()
        try await Task.sleep(for: .milliseconds(100))
        await producer.close(flushTimeout: .milliseconds(200))
        guard case .failure(let error) = await outcome else {
            Issue.record("the send should have failed")
            return
        }
        #expect((error as? CourierError)?.code == .transportUnavailable, "\(error)")
    }

    /// A producer that closes while a message is being enqueued fails that message's waiter (its `didStop`), and
    /// the enqueue then finds the handle closed. The waiter must still run exactly once and the call must not also
    /// fail: `send` resumed its continuation from both, which crashes the process. A large value keeps the enqueue
    /// busy copying it (between reserving the id and reaching the handle) while the producer closes.
    @Test(.cpuBound) func closeDuringAnEnqueueRunsItsDeliveryCallbackOnlyIfTheCallSucceeds() async throws {
        var quiet = Logger(label: "courier.kafka.test")
        quiet.logLevel = .critical
        let value = [UInt8](repeating: 7, count: 400_000_000)
        for _ in 0..<3 {
            let producer = try KafkaProducer(bootstrapServers: "127.0.0.1:1", logger: quiet)
            let callbacks = Mutex(0)
            // Off the concurrency pool: the copy takes a while.
            async let enqueued = offThePool {
                // nil: the call threw.
                try? producer.produce(topic: "nowhere", partition: nil, key: nil, value: value, headers: [],
                                      onDelivery: { _ in callbacks.withLock { $0 += 1 } })
            }
            try await Task.sleep(for: .milliseconds(5))
            await producer.close(flushTimeout: .zero)
            let returned = try await enqueued
            let calls = callbacks.withLock { $0 }
            // Enqueued (true): exactly one callback. Not enqueued (false) or thrown (nil): none.
            #expect(calls == (returned == true ? 1 : 0), "returned \(String(describing: returned)), \(calls) callback(s)")
        }
    }
}
