//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import Synchronization

/// The caller side of the Kafka transport, on the NestJS Kafka wire format.
///
/// A request is a record on the pattern's topic with `kafka_correlationId`, `kafka_replyTopic` and
/// `kafka_replyPartition` naming this instance's reply partition (see ``KafkaReplyStrategy``); replies are read from
/// that partition alone. ``connect(replies:)`` returns only once the reply partition is assigned at its high
/// watermark, so the first reply cannot be missed. An event is a record without correlation headers, and `emit`
/// returns once the broker acknowledged it (or, with ``KafkaConfiguration/awaitsEventAcknowledgement`` off, once
/// it is queued). While librdkafka's local queue is full, requests and events wait for room (a request for at
/// most its timeout); a request librdkafka reports as undeliverable fails its call at once.
///
/// `nativeClient` returns `(KafkaProducer, KafkaAssignedConsumer)`.
public final class KafkaClientTransport: ClientTransport {
    public var name: String { "kafka" }

    private struct Connection: Sendable {
        let producer: KafkaProducer
        let listener: KafkaAssignedConsumer
        let reader: Task<Void, Never>
    }

    private let configuration: KafkaConfiguration
    private let replyTo: KafkaReplyStrategy
    private let logger: Logger
    private let connection = LazyConnection<Connection>(closedMessage: "the Kafka client is closed")
    /// The open connection again, in a concrete type for the per-call path: `LazyConnection`'s generic code is not
    /// specialised outside CourierCore, and its generic metadata lookups took 7 % of a client's CPU when emitting.
    private let openConnection = Mutex<Connection?>(nil)
    /// Set by `close()`, so that a connection opened meanwhile is not cached.
    private let isClosed = Atomic<Bool>(false)
    private let receiver = Mutex<(any ReplyReceiver)?>(nil)

    /// Creates a client transport.
    ///
    /// - Parameters:
    ///   - configuration: The cluster and librdkafka settings (``KafkaConfiguration/groupID`` is not used: a client
    ///     joins no group).
    ///   - replyTo: The reply partition this instance owns. Default: ``KafkaReplyStrategy/singleInstance``.
    ///   - logger: Where transport events and librdkafka's logs go.
    public init(
        configuration: KafkaConfiguration,
        replyTo: KafkaReplyStrategy = .singleInstance,
        logger: Logger = Logger(label: "courier.kafka.client")
    ) {
        self.configuration = configuration
        self.replyTo = replyTo
        self.logger = logger
    }

    public func connect(replies: any ReplyReceiver) async throws {
        _ = try await connection(replies: replies)
    }

    public var isConnected: Bool { openConnection.withLock { $0 } != nil }

    public func nativeClient(replies: any ReplyReceiver) async throws -> any Sendable {
        let connection = try await connection(replies: replies)
        return (connection.producer, connection.listener)
    }

    public func send(_ request: WireRequest) {
        guard let id = request.correlationID else { return }
        let replies = receiver.withLock { $0 }
        guard let connection = openConnection.withLock({ $0 }) else {
            replies?.fail(correlationIDs: CollectionOfOne(id), with: .unavailable("the Kafka client is not connected"))
            return
        }
        let record: KafkaRecordModel
        do {
            record = try KafkaRecordCodec.encodeRequest(
                request,
                replyTo: .init(topic: replyTo.topic, partition: replyTo.partition),
                format: configuration.requestHeaders
            )
        } catch {
            replies?.fail(correlationIDs: CollectionOfOne(id), with: Self.sendFailure(error, request))
            return
        }
        // A request whose delivery fails fails its call at once instead of leaving it to time out.
        let onDelivery: DeliveryWaiter = { result in
            if case .failure(let error) = result {
                replies?.fail(correlationIDs: CollectionOfOne(id), with: Self.sendFailure(error, request))
            }
        }
        let producer = connection.producer
        do {
            if try producer.produce(record, onDelivery: onDelivery) { return }
        } catch {
            replies?.fail(correlationIDs: CollectionOfOne(id), with: Self.sendFailure(error, request))
            return
        }
        // librdkafka's queue is full (`queue.buffering.max.messages`): wait for room in a task, for as long as the
        // call may wait for its reply.
        let deadline = ContinuousClock.now + (request.timeout ?? Self.queueFullPatience)
        Task {
            do {
                try await producer.produceWhenRoom(record, onDelivery: onDelivery, until: deadline)
            } catch {
                replies?.fail(correlationIDs: CollectionOfOne(id), with: Self.sendFailure(error, request))
            }
        }
    }

    /// How long a request without a timeout waits for room in librdkafka's full queue.
    static let queueFullPatience = Duration.seconds(30)

    private static func sendFailure(_ error: any Error, _ request: WireRequest) -> CourierError {
        CourierError.wrapping(error, as: .transportUnavailable, "could not send '\(request.pattern)'")
    }

    public func emit(_ event: WireRequest) async throws {
        guard let connection = openConnection.withLock({ $0 }) else {
            throw CourierError.unavailable("the Kafka client is not connected")
        }
        let record = try KafkaRecordCodec.encodeEvent(event)
        guard configuration.awaitsEventAcknowledgement else {
            try await connection.producer.produceWhenRoom(record)
            return
        }
        _ = try await connection.producer.send(record)
    }

    /// Encodes every event first (one that cannot be encoded fails the batch before any is produced), then
    /// produces them in one loop, in order; a message librdkafka refuses at once (too large, for example) stops the
    /// loop. With event acknowledgements it then waits once for the delivery reports of every message produced,
    /// also when the loop stopped, and throws ``CourierCore/CourierError/batch(_:count:failures:firstUnsent:)``
    /// naming each event that failed to be delivered or was refused, and the events not sent after it.
    public func emit(batch events: [WireRequest]) async throws {
        guard let connection = openConnection.withLock({ $0 }) else {
            throw CourierError.unavailable("the Kafka client is not connected")
        }
        guard let pattern = events.first?.pattern else { return }
        let records = try events.map { try KafkaRecordCodec.encodeEvent($0) }
        guard configuration.awaitsEventAcknowledgement else {
            for (index, record) in records.enumerated() {
                do {
                    try await connection.producer.produceWhenRoom(record)
                } catch {
                    throw CourierError.batch(pattern, count: records.count, failures: [(index, error)],
                                             firstUnsent: index + 1)
                }
            }
            return
        }
        let tally = KafkaDeliveryTally(expecting: records.count)
        var refused: (index: Int, error: any Error)?
        for (index, record) in records.enumerated() {
            do {
                try await connection.producer.produceWhenRoom(record, onDelivery: { tally.report(index, $0) })
            } catch {
                // The messages before it are on their way: their reports are still awaited, so that a failure
                // among them is reported too rather than dropped.
                tally.expectOnly(index)
                refused = (index, error)
                break
            }
        }
        var failures = await tally.wait()
        if let refused { failures.append(refused) }
        guard !failures.isEmpty else { return }
        throw CourierError.batch(pattern, count: records.count, failures: failures,
                                 firstUnsent: refused.map { $0.index + 1 })
    }

    public func close() async {
        isClosed.store(true, ordering: .relaxed)
        openConnection.withLock { $0 = nil }
        guard let connection = await connection.close() else { return }
        connection.reader.cancel()
        await connection.listener.close()
        await connection.producer.close()
    }

    // MARK: Connecting

    private func connection(replies: any ReplyReceiver) async throws -> Connection {
        if let open = openConnection.withLock({ $0 }) { return open }
        receiver.withLock { $0 = replies }
        let open = try await connection.get { try await self.open(replies: replies) }
        openConnection.withLock { cached in
            // A close that raced with this call wins.
            if !isClosed.load(ordering: .relaxed) { cached = open }
        }
        return open
    }

    private func open(replies: any ReplyReceiver) async throws -> Connection {
        try await KafkaTopicCreator(configuration: configuration, logger: logger)
            .ensure([replyTo.topic], minimumPartitions: Int(replyTo.partition) + 1)
        let producer = try KafkaProducer(
            bootstrapServers: configuration.bootstrapServers,
            properties: configuration.producerSettings,
            logger: logger
        )
        let listener: KafkaAssignedConsumer
        do {
            listener = try KafkaAssignedConsumer(
                bootstrapServers: configuration.bootstrapServers,
                partitions: [KafkaTopicPartition(topic: replyTo.topic, partition: replyTo.partition)],
                properties: configuration.consumerSettings.filter { $0.key != "auto.offset.reset" },
                logger: logger
            )
        } catch {
            await producer.close()
            throw error
        }
        do {
            try await listener.ready()
        } catch {
            await listener.close()
            await producer.close()
            throw error
        }
        let logger = self.logger
        let format = configuration.requestHeaders
        // The reader lives as long as the connection; `close()` cancels it.
        let reader = Task {
            for await message in listener.messages {
                guard let reply = KafkaRecordCodec.decodeReply(KafkaRecordModel(message), format: format) else {
                    logger.debug("ignored a record without a correlation id on \(message.topicPartition)")
                    continue
                }
                replies.receive(reply)
            }
        }
        logger.debug("kafka client ready", metadata: ["reply-to": "\(replyTo)"])
        return Connection(producer: producer, listener: listener, reader: reader)
    }
}
