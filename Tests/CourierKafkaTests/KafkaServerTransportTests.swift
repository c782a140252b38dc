//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Courier
import CourierExample
import CourierTestSupport
import Logging
import NIOCore
import Synchronization
import Testing

@testable import CourierKafka

/// A Courier worker on the in-process mock cluster, called the way a NestJS client calls it: request records with
/// `kafka_*` headers, replies read from a reply topic.
@Suite(.serialized) struct KafkaServerTransportTests {
    static let replyTopic = "test.replies"

    /// Reply records by correlation id, filled by one task that reads the reply topic.
    final class ReplyBox: Sendable {
        private let packets = Mutex<[String: [(WireReply, KafkaRecordModel)]]>([:])

        func add(_ reply: WireReply, _ record: KafkaRecordModel) {
            packets.withLock { $0[reply.correlationID, default: []].append((reply, record)) }
        }

        /// The packets for `id` once its terminal packet arrived (at most 10 s).
        func await(_ id: String) async throws -> [(WireReply, KafkaRecordModel)] {
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            while clock.now < deadline {
                let current = packets.withLock { $0[id] ?? [] }
                if current.last?.0.isTerminal == true { return current }
                try await Task.sleep(for: .milliseconds(5))
            }
            Issue.record("no terminal reply for \(id)")
            return packets.withLock { $0[id] ?? [] }
        }
    }

    /// A running worker and a raw NestJS-style caller.
    struct Fixture {
        let cluster: EmbeddedKafkaCluster
        let producer: KafkaProducer
        let replies: ReplyBox
        let audit: AuditLog
        let server: KafkaServerTransport

        /// Sends a request record and returns the reply packets until the end of the stream.
        func call(_ pattern: String, _ json: String, id: String) async throws -> [(WireReply, KafkaRecordModel)] {
            let request = WireRequest(pattern: pattern, payload: ByteBuffer(string: json), correlationID: id)
            let record = try KafkaRecordCodec.encodeRequest(
                request,
                replyTo: .init(topic: KafkaServerTransportTests.replyTopic, partition: 0)
            )
            _ = try await producer.send(topic: record.topic, value: record.value, headers: record.producerHeaders)
            return try await replies.await(id)
        }

        func emit(_ pattern: String, _ json: String) async throws {
            let event = WireRequest(pattern: pattern, payload: ByteBuffer(string: json), correlationID: nil)
            let record = try KafkaRecordCodec.encodeEvent(event)
            _ = try await producer.send(topic: record.topic, value: record.value, headers: record.producerHeaders)
        }
    }

    static func withWorker(
        configuring configure: (inout KafkaConfiguration) -> Void = { _ in },
        _ body: (Fixture) async throws -> Void
    ) async throws {
        let topics = ["math.sum": 4, "math.countdown": 2, "math.fail": 1, "audit.log": 2, "audit.count": 1,
                      replyTopic: 1, KafkaReplyStrategy.singleInstance.topic: 1]
        let cluster = try await EmbeddedKafkaCluster(topics: topics)
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "workers")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let audit = AuditLog()
        let server = KafkaServerTransport(configuration: configuration, logger: logger)
        let worker = Microservice(router: ExampleService.router(audit: audit), transport: server, logger: logger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers,
                                         properties: KafkaConfiguration.lowLatencyProducer)
        let replies = try KafkaConsumer(
            bootstrapServers: cluster.bootstrapServers,
            groupID: "caller",
            topics: [replyTopic],
            properties: KafkaConsumerTests.fastGroup
        )
        let box = ReplyBox()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            group.addTask {
                for await event in replies.events {
                    guard let message = event.message else { continue }
                    let model = KafkaRecordModel(message)
                    if let reply = KafkaRecordCodec.decodeReply(model) { box.add(reply, model) }
                }
            }
            do {
                try await body(Fixture(cluster: cluster, producer: producer, replies: box, audit: audit, server: server))
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
        await replies.close()
        await producer.close()
    }

    @Test func requestsGetNestJSRepliesAndEventsAreHandled() async throws {
        try await Self.withWorker { fixture in
            // A request: one record with the value, the echoed correlation id and the disposed marker.
            let sum = try await fixture.call("math.sum", "[1,2,3]", id: "7c1d3b0e")
            #expect(sum.count == 1)
            let (reply, record) = try #require(sum.first)
            #expect(reply.correlationID == "7c1d3b0e")
            #expect(reply.response.map { String(buffer: $0) } == "6")
            #expect(record.value == Array("6".utf8))
            #expect(record.lastHeader(named: KafkaHeaderName.nestIsDisposed) == [0x00])
            #expect(record.lastHeader(named: KafkaHeaderName.correlationID) == Array("7c1d3b0e".utf8))

            // A stream: one record per element, then a null-valued disposed record.
            let countdown = try await fixture.call("math.countdown", "3", id: "c1")
            let values = countdown.compactMap { $0.0.response.map { String(buffer: $0) } }
            #expect(values == ["3", "2", "1"])
            #expect(countdown.last?.0.isDisposed == true)
            #expect(countdown.last?.1.value == nil)

            // An error: kafka_nest-err with NestJS's key order first, a null value, disposed.
            let failure = try await fixture.call("math.fail", "{}", id: "f1")
            let (errorReply, errorRecord) = try #require(failure.first)
            #expect(errorRecord.value == nil)
            let header = String(decoding: errorRecord.lastHeader(named: KafkaHeaderName.nestError).flatMap { $0 } ?? [],
                                as: UTF8.self)
            #expect(header.hasPrefix(#"{"status":"error","message":"math.fail always fails","code":422"#))
            #expect(WireReply.callerError(from: try #require(errorReply.error)).code.rawValue == 422)

            // Events: no reply, handled by the worker.
            for index in 0..<5 { try await fixture.emit("audit.log", "{\"i\":\(index)}") }
            var counted = ""
            for attempt in 0..<100 {
                let reply = try await fixture.call("audit.count", "null", id: "count-\(attempt)")
                counted = reply.first?.0.response.map { String(buffer: $0) } ?? ""
                if counted == "5" { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(counted == "5")
        }
    }

    /// A reply the producer refuses for what it is (an illegal reply topic, a reply partition that does not exist)
    /// would be refused again after redelivery: the record is acknowledged, and its partition goes on.
    @Test func aRefusedReplyDoesNotStopItsPartition() async throws {
        try await Self.withWorker { fixture in
            func send(_ id: String, replyTopic: String, replyPartition: String) async throws {
                let headers: [(String, [UInt8])] = [
                    (KafkaHeaderName.correlationID, Array(id.utf8)),
                    (KafkaHeaderName.replyTopic, Array(replyTopic.utf8)),
                    (KafkaHeaderName.replyPartition, Array(replyPartition.utf8)),
                ]
                _ = try await fixture.producer.send(topic: "math.sum", partition: 0, value: Array("[1,2,3]".utf8),
                                                    headers: headers)
            }
            try await send("illegal-topic", replyTopic: "bad topic", replyPartition: "0")
            try await send("missing-partition", replyTopic: Self.replyTopic, replyPartition: "7")
            try await send("after-them", replyTopic: Self.replyTopic, replyPartition: "0")
            let reply = try await fixture.replies.await("after-them")
            #expect(reply.first?.0.response.map { String(buffer: $0) } == "6")
        }
    }

    /// After a fatal librdkafka error (here an idempotent producer's broken sequence) the worker can do nothing
    /// more: it stops with the error instead of looking alive, so that its process can be restarted. (A consumer's
    /// fatal error, such as being fenced, takes the same path; `rd_kafka_test_fatal_error` on a consumer makes
    /// librdkafka 2.0.2's main thread spin, so it is not tested here.)
    @Test func aFatalErrorStopsTheWorkerWithIt() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["math.sum": 1])
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "fatal")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let transport = KafkaServerTransport(configuration: configuration, logger: logger)
        let worker = Microservice(router: ExampleService.router(), transport: transport, logger: logger)
        let running = Task { try await worker.run() }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        var native: (KafkaConsumer, KafkaProducer)?
        while native == nil, clock.now < deadline {
            native = try? await transport.nativeServer() as? (KafkaConsumer, KafkaProducer)
            if native == nil { try await Task.sleep(for: .milliseconds(10)) }
        }
        let producer = try #require(native).1
        let triggered = producer.withUnsafeHandle {
            rd_kafka_test_fatal_error($0, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "sequence")
        }
        #expect(triggered == RD_KAFKA_RESP_ERR_NO_ERROR)
        let stopped = Task {
            try await Task.sleep(for: .seconds(20))
            running.cancel()
        }
        let error = await #expect(throws: CourierError.self) { try await running.value }
        stopped.cancel()
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.contains("fatal") == true, "\(String(describing: error))")
    }

    @Test func failingEventsAreRetriedThenDeadLettered() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["audit.bad": 1, "audit.bad.dlq": 1])
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "dlq-workers")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.eventFailures = .deadLetter(retries: 2, initialBackoff: .milliseconds(10))
        let attempts = Atomic<Int>(0)
        var router = MessageRouter()
        router.on(EventPattern<Int>("audit.bad")) { _, _ in
            attempts.add(1, ordering: .relaxed)
            throw CourierError(.unprocessable, "always fails")
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = KafkaServerTransport(configuration: configuration, logger: logger)
        let worker = Microservice(router: router, transport: server, logger: logger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let event = try KafkaRecordCodec.encodeEvent(
                WireRequest(pattern: "audit.bad", payload: ByteBuffer(string: "7"), correlationID: nil)
            )
            _ = try await producer.send(topic: event.topic, key: Array("k".utf8), value: event.value,
                                        headers: [("trace", Array("t-1".utf8))])
            let parked = try await offThePool {
                try readBlocking(bootstrapServers: cluster.bootstrapServers, topic: "audit.bad.dlq", partitions: 1,
                                 count: 1)
            }
            group.cancelAll()
            let record = try #require(parked.first)
            #expect(record.value == Array("7".utf8))
            let headers = Dictionary(record.headers.map { ($0.name, String(decoding: $0.value ?? [], as: UTF8.self)) },
                                     uniquingKeysWith: { _, last in last })
            #expect(headers["trace"] == "t-1")
            #expect(headers[KafkaDeadLetterHeader.topic] == "audit.bad")
            #expect(headers[KafkaDeadLetterHeader.partition] == "0")
            #expect(headers[KafkaDeadLetterHeader.offset] == "0")
            #expect(headers[KafkaDeadLetterHeader.attempts] == "3")
            #expect(headers[KafkaDeadLetterHeader.error]?.contains("always fails") == true)
        }
        #expect(attempts.load(ordering: .relaxed) == 3)
        await producer.close()
    }

    /// A failing event whose dead letter is refused for what it is (here `<topic>.dlq` would be longer than Kafka's
    /// 249 characters, so no redelivery can ever produce it) must not block its partition forever: "a poison record
    /// blocks it for a bounded time only". The next record of the partition is handled.
    @Test func anEventWhoseDeadLetterCanNeverBeProducedDoesNotStopItsPartition() async throws {
        let topic = "audit." + String(repeating: "x", count: KafkaTopicName.maximumLength - "audit.".count)
        let cluster = try await EmbeddedKafkaCluster(topics: [topic: 1])
        defer { cluster.close() }
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers, groupID: "dlq-illegal")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.eventFailures = .deadLetter(retries: 0)
        configuration.redeliveryBackoff = .milliseconds(100)
        configuration.maxRedeliveryBackoff = .milliseconds(100)
        let handled = Mutex<[Int]>([])
        var router = MessageRouter()
        router.on(EventPattern<Int>(topic)) { value, _ in
            handled.withLock { $0.append(value) }
            if value == 1 { throw CourierError(.unprocessable, "poison") }
        }
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = Microservice(router: router, transport: KafkaServerTransport(configuration: configuration,
                                                                                  logger: logger), logger: logger)
        let producer = try KafkaProducer(bootstrapServers: cluster.bootstrapServers)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            for value in [1, 2] {
                _ = try await producer.send(topic: topic, partition: 0, value: Array("\(value)".utf8))
            }
            for _ in 0..<150 where !handled.withLock({ $0.contains(2) }) {
                try await Task.sleep(for: .milliseconds(100))
            }
            group.cancelAll()
        }
        let runs = handled.withLock { $0 }
        #expect(runs.contains(2), "the record after the poison one was never handled; runs: \(runs)")
        #expect(runs.filter { $0 == 1 }.count == 1, "the poison record ran \(runs.filter { $0 == 1 }.count) times")
        await producer.close()
    }

    @Test(arguments: [true, false])
    func courierClientsEmitWithOrWithoutWaitingForTheBroker(_ awaitsAcknowledgement: Bool) async throws {
        try await Self.withWorker { fixture in
            var configuration = KafkaConfiguration(bootstrapServers: fixture.cluster.bootstrapServers)
            configuration.awaitsEventAcknowledgement = awaitsAcknowledgement
            let client = CourierClient(transport: KafkaClientTransport(configuration: configuration))
            for index in 0..<5 { try await client.emit(ExampleService.auditLog, ["i": .integer(Int64(index))]) }
            try await client.emitBatch(ExampleService.auditLog, (5..<500).map { ["i": .integer(Int64($0))] })
            var counted = 0
            for _ in 0..<100 {
                counted = try await client.send(ExampleService.auditCount, NoPayload())
                if counted >= 500 { break }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(counted == 500)
            let indexes = fixture.audit.all.compactMap { $0["i"]?.intValue }
            #expect(indexes.count == 500 && Set(indexes) == Set(0..<500))
            await client.shutdown()
        }
    }

    /// Without idempotence, a stream's elements after the first go out through the worker's second producer, which
    /// has one request in flight and so keeps them in order, enqueued one after another: with the worker's
    /// `linger.ms` at 50, 400 elements that each waited for the previous one's acknowledgement would take 20 s at
    /// least. A single reply does not create that producer.
    @Test func aStreamsElementsArePipelinedInOrderWithoutIdempotence() async throws {
        try await Self.withWorker(configuring: { $0.producerProperties["linger.ms"] = "50" }) { fixture in
            let client = CourierClient(
                transport: KafkaClientTransport(
                    configuration: KafkaConfiguration(bootstrapServers: fixture.cluster.bootstrapServers)
                )
            )
            #expect(try await client.send(ExampleService.sum, [1, 2]) == 3)
            #expect(fixture.server.streamReplies.withLock { $0?.isOpen } == false)
            let clock = ContinuousClock()
            let started = clock.now
            let elements = try await client.sendStream(ExampleService.countdown, 400, timeout: .seconds(60)).collect()
            let took = clock.now - started
            await client.shutdown()
            #expect(elements == Array((1...400).reversed()))
            #expect(took < .seconds(10), "400 elements took \(took)")
            #expect(fixture.server.streamReplies.withLock { $0?.isOpen } == true)
        }
    }

    /// With an idempotent producer a worker enqueues a stream's elements without waiting for each acknowledgement;
    /// librdkafka keeps them in order.
    @Test func anIdempotentWorkerPipelinesAStreamInOrder() async throws {
        try await Self.withWorker(configuring: { $0.producerProperties["enable.idempotence"] = "true" }) { fixture in
            let client = CourierClient(
                transport: KafkaClientTransport(
                    configuration: KafkaConfiguration(bootstrapServers: fixture.cluster.bootstrapServers)
                )
            )
            let elements = try await client.sendStream(ExampleService.countdown, 3_000).collect()
            await client.shutdown()
            #expect(elements == Array((1...3_000).reversed()))
            #expect(fixture.server.streamReplies.withLock { $0 } == nil, "no second producer")
        }
    }

    /// A client whose messages librdkafka gives up on after 300 ms (`message.timeout.ms`).
    static func clientGivingUpAfter300Milliseconds(on cluster: EmbeddedKafkaCluster) -> CourierClient {
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.producerProperties["message.timeout.ms"] = "300"
        return CourierClient(transport: KafkaClientTransport(configuration: configuration))
    }

    /// A request librdkafka cannot deliver fails its call with the delivery error, not with the call's timeout.
    @Test func anUndeliverableRequestFailsItsCallAtOnce() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["math.sum": 1, KafkaReplyStrategy.singleInstance.topic: 1])
        defer { cluster.close() }
        let client = Self.clientGivingUpAfter300Milliseconds(on: cluster)
        // Connects (the reply partition is assigned) before the topic loses its leader.
        _ = try await client.unwrap(as: (KafkaProducer, KafkaAssignedConsumer).self)
        // Without a leader, the request waits in librdkafka until its message timeout.
        try await cluster.setLeader(of: "math.sum", partition: 0, to: nil)
        let started = ContinuousClock.now
        let error = await #expect(throws: CourierError.self) {
            _ = try await client.send(ExampleService.sum, [1, 2], timeout: .seconds(60))
        }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.contains("math.sum") == true)
        #expect(ContinuousClock.now - started < .seconds(30), "failed by the delivery report, not the timeout")
        await client.shutdown()
    }

    /// A batch of events awaiting acknowledgements fails with the delivery error once librdkafka gives up on one.
    @Test func aBatchWhoseEventsCannotBeDeliveredFails() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["audit.log": 1, KafkaReplyStrategy.singleInstance.topic: 1])
        defer { cluster.close() }
        let client = Self.clientGivingUpAfter300Milliseconds(on: cluster)
        try await client.emitBatch(ExampleService.auditLog, [1, 2, 3])
        try await cluster.setLeader(of: "audit.log", partition: 0, to: nil)
        let error = await #expect(throws: CourierError.self) {
            try await client.emitBatch(ExampleService.auditLog, [4, 5, 6])
        }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message.contains("audit.log") == true)
        await client.shutdown()
    }

    /// A batch whose second event librdkafka refuses at once (larger than `message.max.bytes`) while the first is
    /// produced but cannot be delivered (no leader): the error reports both, and the third as not sent. Before,
    /// the refusal was thrown at once and the first event's delivery report went to a tally nobody waited for: its
    /// failure was neither thrown nor logged.
    @Test func aBatchStoppedByARefusedEventStillReportsTheDeliveryOfTheEventsBeforeIt() async throws {
        let cluster = try await EmbeddedKafkaCluster(topics: ["audit.log": 1, KafkaReplyStrategy.singleInstance.topic: 1])
        defer { cluster.close() }
        let client = Self.clientGivingUpAfter300Milliseconds(on: cluster)
        let oversized = JSONValue.string(String(repeating: "x", count: 1_100_000))
        // Delivered: the error names the refused event alone, and counts the first as accepted.
        let refusal = await #expect(throws: CourierError.self) {
            try await client.emitBatch("audit.log", json: [1, oversized, 3])
        }
        #expect(refusal?.message.contains("1 of 3 'audit.log' events failed (event 2: ") == true, "\(String(describing: refusal))")
        #expect(refusal?.details == ["failed": [1], "accepted": 1, "notSent": 1], "\(String(describing: refusal))")

        try await cluster.setLeader(of: "audit.log", partition: 0, to: nil)
        let started = ContinuousClock.now
        let error = await #expect(throws: CourierError.self) {
            try await client.emitBatch("audit.log", json: [1, oversized, 3])
        }
        let described = String(describing: error)
        #expect(error?.message.contains("2 of 3 'audit.log' events failed (event 1: ") == true, "\(described)")
        #expect(error?.message.contains("; event 2: ") == true, "\(described)")
        #expect(error?.message.contains("the 1 after event 2 were not sent; none accepted") == true, "\(described)")
        #expect(error?.details == ["failed": [0, 1], "accepted": 0, "notSent": 1], "\(described)")
        #expect(ContinuousClock.now - started < .seconds(30), "the delivery report came within its message timeout")
        await client.shutdown()
    }

    /// A Courier client speaking Spring's binary headers to a Courier worker, which reads both forms.
    @Test func courierClientsWithSpringHeadersGetTheirReplies() async throws {
        try await Self.withWorker { fixture in
            var configuration = KafkaConfiguration(bootstrapServers: fixture.cluster.bootstrapServers)
            configuration.requestHeaders = .spring
            let client = CourierClient(transport: KafkaClientTransport(configuration: configuration))
            let sum = try await client.send(ExampleService.sum, [40, 2])
            let countdown = try await client.sendStream(ExampleService.countdown, 3).collect()
            await client.shutdown()
            #expect(sum == 42)
            #expect(countdown == [3, 2, 1])
        }
    }

    @Test func wildcardSubscriptionsSkipReplyTopicsAndTheirOwnDeadLetters() throws {
        #expect(KafkaServerTransport.isForeignTopic("orders.reply", subscribed: ["^orders\\.[^.]+$"]))
        #expect(!KafkaServerTransport.isForeignTopic("orders.reply", subscribed: ["orders.reply"]))
        #expect(!KafkaServerTransport.isForeignTopic("orders.created", subscribed: ["^orders\\.[^.]+$"]))
        // Dead-letter topics too: `orders.**` also matches `orders.created.dlq`.
        #expect(KafkaServerTransport.isForeignTopic("orders.created.dlq", subscribed: ["^orders\\..+$"],
                                                    deadLetterSuffix: ".dlq"))
        #expect(!KafkaServerTransport.isForeignTopic("orders.created.dlq", subscribed: ["orders.created.dlq"],
                                                     deadLetterSuffix: ".dlq"))
        #expect(!KafkaServerTransport.isForeignTopic("orders.created.dlq", subscribed: ["^orders\\..+$"],
                                                     deadLetterSuffix: nil))
        // A route written for dead letters gets them: `orders.created` is not one of its topics.
        let deadLetters = try KafkaTopicName.subscription(for: RoutePattern("orders.*.dlq"))
        #expect(!KafkaServerTransport.isForeignTopic("orders.created.dlq", subscribed: [deadLetters],
                                                     deadLetterSuffix: ".dlq"))
        #expect(KafkaServerTransport.isForeignTopic("orders.created.dlq",
                                                    subscribed: [deadLetters, "orders.created"],
                                                    deadLetterSuffix: ".dlq"))
    }
}
