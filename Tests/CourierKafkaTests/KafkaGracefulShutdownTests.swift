//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTestSupport
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

@testable import CourierKafka

/// A Kafka worker's graceful shutdown, end to end: the handler in flight finishes and its reply reaches the
/// broker, the offsets of the records it handled are committed, the records it took but did not start are left
/// uncommitted, and a worker started afterwards in the same group handles exactly those.
@Suite(.serialized) struct KafkaGracefulShutdownTests {
    /// Opens once; every waiter then goes on. Waiting ends with `CancellationError` when the waiter is cancelled.
    final class Gate: Sendable {
        private let isOpen = Atomic<Bool>(false)
        func open() { isOpen.store(true, ordering: .relaxed) }
        func wait() async throws {
            while !isOpen.load(ordering: .relaxed) { try await Task.sleep(for: .milliseconds(10)) }
        }
    }

    /// What the workers handled, as `"<worker> <value>"`, in order.
    final class Runs: Sendable {
        private let runs = Mutex<[String]>([])
        func append(_ run: String) { runs.withLock { $0.append(run) } }
        func handled(by name: String) -> [String] { runs.withLock { $0.filter { $0.hasPrefix(name + " ") } } }
    }

    /// A worker of group `drain-workers` on `pipe.req` that records which values it handled, under `name`. The
    /// handler of value 1 waits for `slow` to open. Auto-commit is as good as off (every 10 minutes), so what is
    /// committed is what the worker commits as it stops.
    static func worker(
        _ name: String,
        cluster: EmbeddedKafkaCluster,
        partitionConcurrency: Int,
        runs: Runs,
        started: Gate,
        slow: Gate,
        gracefulShutdownTimeout: Duration = .seconds(30)
    ) -> Microservice {
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "drain-workers")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.consumerProperties["auto.commit.interval.ms"] = "600000"
        configuration.partitionConcurrency = partitionConcurrency
        var router = MessageRouter()
        router.on(MessagePattern<Int, Int>("pipe.req")) { value, _ in
            runs.append("\(name) \(value)")
            if value == 1 {
                started.open()
                try await slow.wait()
            }
            return value * 10
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return Microservice(
            router: router,
            transport: KafkaServerTransport(configuration: configuration, logger: logger),
            configuration: MicroserviceConfiguration(gracefulShutdownTimeout: gracefulShutdownTimeout),
            logger: logger
        )
    }

    /// Runs `first` in a service group, sends records 0 and 1, waits until record 1's handler runs, sends records 2
    /// and 3 behind it, and begins the graceful shutdown; returns the group's task. Record 0 is handled at once.
    /// With one handler per partition at a time records 2 and 3 wait in the worker; with four they may start too,
    /// and finish.
    static func shutDownWithAHandlerInFlight(
        _ first: Microservice,
        started: Gate,
        producer: KafkaProducer
    ) async throws -> Task<Void, any Error> {
        try await KafkaPipeliningTests.sendRequests([(0, 0), (1, 0)], with: producer)
        let group = ServiceGroup(services: [first], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        do {
            try await finish(within: .seconds(60), "the slow handler starting") { try await started.wait() }
            // Records 2 and 3 are fetched while record 1's handler runs.
            try await KafkaPipeliningTests.sendRequests([(2, 0), (3, 0)], with: producer)
            try await Task.sleep(for: .seconds(1))
        } catch {
            running.cancel()
            throw error
        }
        await group.triggerGracefulShutdown()
        return running
    }

    @Test(arguments: [1, 4])
    func aGracefulShutdownCommitsWhatItHandledAndLeavesTheRestToTheNextWorker(partitionConcurrency: Int) async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 1])
        defer { cluster.close() }
        let runs = Runs()
        func handled(by name: String) -> [String] { runs.handled(by: name) }
        let started = Gate()
        let slow = Gate()
        let first = Self.worker("first", cluster: cluster, partitionConcurrency: partitionConcurrency, runs: runs,
                                started: started, slow: slow)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        let running = try await Self.shutDownWithAHandlerInFlight(first, started: started, producer: producer)
        defer { running.cancel() }
        try await KafkaPipeliningTests.wait(atMost: 10) { first.isDraining }
        #expect(first.isDraining)
        slow.open()
        try await finish(within: .seconds(60), "the first worker stopping") { try await running.value }
        let firstHandled = handled(by: "first")
        #expect(firstHandled.contains("first 0") && firstHandled.contains("first 1"), "\(firstHandled)")
        // Every handled record's reply reached the broker.
        let replies = try await offThePool { [servers = cluster.bootstrapServers, count = firstHandled.count] in
            try readBlocking(bootstrapServers: servers, topic: "pipe.replies", partitions: 1, count: count, timeout: 30)
        }
        #expect(replies.count == firstHandled.count, "replies \(replies.map { String(decoding: $0.value ?? [], as: UTF8.self) })")
        // The records the first worker handled are committed, the others are not.
        let committed = try await KafkaPipeliningTests.committedOffset(cluster, group: "drain-workers")
        #expect(committed == Int64(firstHandled.count), "committed \(committed) after handling \(firstHandled)")

        // A worker started afterwards in the same group handles exactly the records the first one did not.
        let second = Self.worker("second", cluster: cluster, partitionConcurrency: partitionConcurrency, runs: runs,
                                 started: Gate(), slow: slow)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await second.run() }
            let total = 4
            try await KafkaPipeliningTests.wait(atMost: 60) { firstHandled.count + handled(by: "second").count >= total }
            // Anything handled twice would show up by now.
            try await Task.sleep(for: .seconds(1))
            tasks.cancelAll()
        }
        let secondHandled = handled(by: "second").map { $0.dropFirst("second ".count) }
        let firstValues = firstHandled.map { $0.dropFirst("first ".count) }
        #expect(Set(secondHandled).isDisjoint(with: firstValues), "handled again: \(secondHandled) after \(firstValues)")
        #expect(Set(secondHandled).union(firstValues) == ["0", "1", "2", "3"], "\(firstValues) then \(secondHandled)")
        await producer.close()
    }

    /// A handler that outlives the graceful shutdown timeout is cancelled and its record left uncommitted (with
    /// every later one of its partition, even those handled meanwhile), so that the next worker handles it.
    @Test(arguments: [1, 4])
    func aHandlerCancelledAtTheTimeoutLeavesItsRecordToTheNextWorker(partitionConcurrency: Int) async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 1])
        defer { cluster.close() }
        let runs = Runs()
        let started = Gate()
        let first = Self.worker("first", cluster: cluster, partitionConcurrency: partitionConcurrency, runs: runs,
                                started: started, slow: Gate(), gracefulShutdownTimeout: .seconds(1))
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        let running = try await Self.shutDownWithAHandlerInFlight(first, started: started, producer: producer)
        defer { running.cancel() }
        try await finish(within: .seconds(60), "the first worker stopping") { try await running.value }
        #expect(runs.handled(by: "first").contains("first 0"))
        // Only record 0 was finished: record 1's handler was cancelled, and nothing after it may be committed.
        let committed = try await KafkaPipeliningTests.committedOffset(cluster, group: "drain-workers")
        #expect(committed == 1, "committed \(committed) after handling \(runs.handled(by: "first"))")

        let opened = Gate()
        opened.open()
        let second = Self.worker("second", cluster: cluster, partitionConcurrency: partitionConcurrency, runs: runs,
                                 started: Gate(), slow: opened)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await second.run() }
            try await KafkaPipeliningTests.wait(atMost: 60) { runs.handled(by: "second").count >= 3 }
            try await Task.sleep(for: .seconds(1))
            tasks.cancelAll()
        }
        let secondValues = runs.handled(by: "second").map { $0.dropFirst("second ".count) }
        #expect(secondValues.sorted() == ["1", "2", "3"], "\(secondValues)")
        await producer.close()
    }

    /// A reply the broker cannot take (its partition has no leader) is retried by librdkafka for
    /// `message.timeout.ms`, 5 minutes by default. The worker must not wait that long past its graceful shutdown
    /// timeout to stop, and the record must not be lost: it is left uncommitted, and the next worker in the group
    /// handles it again. Before the fix the worker had not stopped 60 s after a 30 s timeout.
    @Test func aReplyTheBrokerCannotTakeDoesNotHoldTheShutdownPastItsTimeout() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["pipe.req": 1, "pipe.replies": 2])
        defer { cluster.close() }
        let handled = Runs()
        let first = KafkaPipeliningTests.echoWorker(
            cluster, group: "stuck-reply-workers",
            configure: { $0.consumerProperties["auto.commit.interval.ms"] = "600000" },
            microservice: MicroserviceConfiguration(gracefulShutdownTimeout: .seconds(2))
        ) { handled.append("first \($0)") }
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: nil)
        try await KafkaPipeliningTests.sendRequests([(1, 0)], with: producer)
        let group = ServiceGroup(services: [first], logger: Logger(label: "test"))
        let running = Task { try await group.run() }
        defer { running.cancel() }
        try await finish(within: .seconds(60), "the first worker handling the request") {
            while handled.handled(by: "first").isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        }
        await group.triggerGracefulShutdown()
        // 2 s of graceful timeout, and generous room for a loaded machine; not the 5 minutes of message.timeout.ms.
        try await finish(within: .seconds(30), "the first worker stopping") { try await running.value }

        try await cluster.setLeader(of: "pipe.replies", partition: 0, to: 1)
        let second = KafkaPipeliningTests.echoWorker(cluster, group: "stuck-reply-workers") {
            handled.append("second \($0)")
        }
        let secondGroup = ServiceGroup(services: [second], logger: Logger(label: "test"))
        let secondRunning = Task { try await secondGroup.run() }
        defer { secondRunning.cancel() }
        try await finish(within: .seconds(60), "the second worker handling the request again") {
            while handled.handled(by: "second").isEmpty { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(handled.handled(by: "second") == ["second 1"])
        await secondGroup.triggerGracefulShutdown()
        try await finish(within: .seconds(30), "the second worker stopping") { try await secondRunning.value }
        await producer.close()
    }
}
