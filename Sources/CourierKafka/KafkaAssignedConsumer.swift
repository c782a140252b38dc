//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// A Kafka consumer of explicit partitions, outside any consumer group, that starts at each partition's end.
///
/// This is the reply listener of Kafka RPC clients: each client instance reads the reply partitions it owns and no
/// others, so no rebalance or scale-out can take its replies away or hand it anyone else's. ``ready()`` fetches each
/// partition's high watermark and assigns the partition at exactly that offset (`rd_kafka_assign` with explicit
/// offsets), so once it returns, every message produced to those partitions afterwards is delivered, and nothing
/// older is. Produce the first request only after ``ready()`` has returned; that is what guarantees the first reply
/// is not missed (a "seek to end" after assigning would race with it).
///
/// Nothing is ever committed (`enable.auto.commit=false`). The partitions' topics must exist: Courier does not
/// create them (with ``EmbeddedKafkaCluster`` use ``EmbeddedKafkaCluster/createTopic(_:partitions:)``; with real
/// brokers create them beforehand), and ``ready()`` fails with a message naming a missing one.
///
/// A dedicated thread polls librdkafka and runs the blocking watermark queries; it never blocks Swift
/// concurrency's pool. Messages arrive through ``messages`` with the same backpressure as ``KafkaConsumer``.
public final class KafkaAssignedConsumer: Sendable {
    /// The consumer's messages, in order within each partition. Iterate it once; it ends after ``close()``.
    ///
    /// Nothing arrives before ``ready()`` has returned.
    public let messages: KafkaConsumerMessages

    /// The partitions this consumer reads.
    public let partitions: [KafkaTopicPartition]

    private let client: RDKafkaClient
    private let context: ConsumerContext
    private let gate: ReadyGate

    /// Creates the consumer and starts its poll thread. It reads nothing until ``ready()`` is called.
    ///
    /// - Parameters:
    ///   - bootstrapServers: The brokers to contact first, as `host:port[,host:port…]`.
    ///   - partitions: The partitions to read; at least one, no duplicates.
    ///   - properties: Any other librdkafka configuration properties, such as `fetch.wait.max.ms` (the main
    ///     latency knob for replies). Default: none (librdkafka's defaults). `enable.auto.commit` is always
    ///     `false` and `log.queue` always `true`. `group.id` defaults to a unique throwaway id: librdkafka's
    ///     consumer API refuses to assign or poll without one, but no group is ever joined or committed to.
    ///   - readyTimeout: The longest ``ready()`` spends querying the partitions' high watermarks, in total.
    ///     Default: `.seconds(10)`.
    ///   - lowWatermark: How few buffered messages make a paused consumer resume. Default: `2_000`.
    ///   - highWatermark: How many buffered messages make the reader count as behind. Default: `10_000`.
    ///   - pauseDelay: How long the reader may stay behind before the consumer pauses its partitions; until then the
    ///     poll thread only stops polling, which keeps librdkafka's prefetched messages (pausing drops them, and
    ///     resuming restarts fetching slowly). Default: `.milliseconds(500)`.
    ///   - logger: Where librdkafka's logs and errors go. Default: a logger labelled
    ///     `courier.kafka.assigned-consumer`.
    /// - Throws: ``CourierError/Code/unprocessable`` for a rejected property, bad watermarks, a non-positive
    ///   timeout, an empty `group.id`, or an empty or duplicated partition list;
    ///   ``CourierError/Code/transportUnavailable`` if the handle cannot be created.
    public init(
        bootstrapServers: String,
        partitions: [KafkaTopicPartition],
        properties: [String: String] = [:],
        readyTimeout: Duration = .seconds(10),
        lowWatermark: Int = 2_000,
        highWatermark: Int = 10_000,
        pauseDelay: Duration = .milliseconds(500),
        logger: Logger = Logger(label: "courier.kafka.assigned-consumer")
    ) throws {
        guard lowWatermark >= 0, lowWatermark <= highWatermark else {
            throw CourierError(.unprocessable, "watermarks need 0 <= low (\(lowWatermark)) <= high (\(highWatermark))")
        }
        guard pauseDelay >= .zero else {
            throw CourierError(.unprocessable, "pauseDelay must not be negative, not \(pauseDelay)")
        }
        guard !partitions.isEmpty else {
            throw CourierError(.unprocessable, "a KafkaAssignedConsumer needs at least one partition")
        }
        guard Set(partitions).count == partitions.count, partitions.allSatisfy({ $0.partition >= 0 }) else {
            throw CourierError(.unprocessable, "partitions must be distinct and non-negative: \(partitions)")
        }
        guard readyTimeout > .zero else {
            throw CourierError(.unprocessable, "readyTimeout must be positive, not \(readyTimeout)")
        }
        // librdkafka 2.0.2 creates no group handle for an empty or absent group.id, and then answers
        // rd_kafka_poll_set_consumer, rd_kafka_assign and rd_kafka_consumer_poll with _UNKNOWN_GROUP (measured).
        // Assigning never joins the group, and with nothing committed it never exists on the brokers.
        guard properties["group.id"] != "" else {
            throw CourierError(.unprocessable, "librdkafka cannot assign partitions with an empty group.id")
        }
        var properties = properties
        properties["bootstrap.servers"] = bootstrapServers
        if properties["group.id"] == nil { properties["group.id"] = "courier-assigned-\(UUID().uuidString)" }
        properties["enable.auto.commit"] = "false"
        // A missing reply topic must be reported, not created behind the operator's back with the broker's
        // default partition count.
        if properties["allow.auto.create.topics"] == nil { properties["allow.auto.create.topics"] = "false" }
        // Nothing reads stored offsets, so storing them would only be bookkeeping.
        properties["enable.auto.offset.store"] = "false"

        let backPressure = ConsumerBackPressure()
        let queue = ConsumerEventQueue(lowWatermark: lowWatermark, highWatermark: highWatermark, delegate: backPressure)
        let context = ConsumerContext(backPressure: backPressure, source: queue, logger: logger,
                                      pauseDelay: pauseDelay)
        // No rebalance callback and no conf opaque: without a subscription there are no rebalances.
        let client = try RDKafkaClient(
            type: RD_KAFKA_CONSUMER,
            properties: properties,
            events: 0,
            eventsOnMainQueue: false,
            logger: logger
        )
        // Messages and errors now all come out of rd_kafka_consumer_poll.
        rd_kafka_poll_set_consumer(client.handle)
        let gate = ReadyGate()
        client.start(
            name: "rdkafka-assigned-consumer",
            poll: { handle in
                // The watermark queries block, so they run here and not on a task; while they do, nothing is
                // assigned yet, so no messages wait.
                if gate.takeRequest() {
                    gate.finish(Self.assignAtEnd(handle, partitions, readyTimeout, context))
                }
                context.pollStep(handle)
            },
            didStop: { [client] in
                // On the poll thread, which serves the consumer queue. There is no group to leave and nothing to
                // commit, but it stops the fetchers and lets librdkafka tidy up before the handle is destroyed.
                let err = rd_kafka_consumer_close(client.handle)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    context.logger.warning("rd_kafka_consumer_close: \(String(cString: rd_kafka_err2str(err)))")
                }
                gate.close()
                context.source.finish()
            }
        )
        self.client = client
        self.context = context
        self.gate = gate
        self.partitions = partitions
        self.messages = KafkaConsumerMessages(queue: queue)
    }

    /// Returns once every partition is assigned at the high watermark it had when this ran.
    ///
    /// Every message produced to the partitions after this returns is delivered through ``messages``; messages
    /// already in them when it ran are not (one still in flight then may be, so readers must tolerate strays). Calls after a success return at once; concurrent calls share one
    /// attempt; after a failure the next call tries again. Cancelling the calling task does not end the wait,
    /// which is bounded by the `readyTimeout` given to the initialiser (plus up to about 100 ms for the poll
    /// thread to pick the request up).
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` with librdkafka's error text if a watermark query
    ///   fails or times out, naming the topic if it does not exist, or if the consumer is closed.
    public func ready() async throws {
        try await gate.wait()
    }

    /// Stops reading and frees the handle; ``messages`` then ends, and a pending ``ready()`` fails.
    ///
    /// There is no group, so nothing is committed. Idempotent; concurrent calls all return once closed. Waits
    /// for a watermark query in progress (at most `readyTimeout`).
    public func close() async {
        await client.shutdown()
    }

    /// Calls `body` with the raw `rd_kafka_t *` for librdkafka functions Courier does not wrap.
    ///
    /// The handle is owned by the consumer: do not destroy or poll it, do not change its assignment, and do not use
    /// it concurrently with or after ``close()``.
    public func withUnsafeHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        precondition(!client.isClosed, "KafkaAssignedConsumer.withUnsafeHandle called after close()")
        return try body(client.handle)
    }

    /// How many times the consumer paused its partitions because the reader fell behind.
    var pauseCount: Int { context.backPressure.state.withLock { $0.pauses } }

    deinit { client.requestStop() }

    // MARK: - On the poll thread

    /// Checks that every partition exists, queries each one's high watermark, then assigns them all at those
    /// offsets in one call.
    ///
    /// Assigning only after every query has succeeded makes readiness all or nothing. One deadline covers every
    /// request, so readiness stays bounded however many partitions there are.
    private static func assignAtEnd(
        _ handle: OpaquePointer,
        _ partitions: [KafkaTopicPartition],
        _ timeout: Duration,
        _ context: ConsumerContext
    ) -> Result<Void, CourierError> {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var checked: Set<String> = []
        for partition in partitions where checked.insert(partition.topic).inserted {
            if let failure = checkExists(handle, partition.topic, partitions, deadline, timeout) {
                return .failure(failure)
            }
        }
        let list = rd_kafka_topic_partition_list_new(Int32(clamping: partitions.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(
                handle, partition.topic, partition.partition, &low, &high, milliseconds(until: deadline)
            )
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                let operation = "querying the high watermark of \(partition) (ready timeout \(timeout))"
                return .failure(RDKafkaConfig.error(.transportUnavailable, operation, err))
            }
            rd_kafka_topic_partition_list_add(list, partition.topic, partition.partition).pointee.offset = high
            context.logger.debug("assigning \(partition) at its high watermark \(high) (low watermark \(low))")
        }
        let err = context.assignManually(handle, list)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            return .failure(RDKafkaConfig.error(.transportUnavailable, "assigning \(partitions)", err))
        }
        return .success(())
    }

    /// Fails if `topic` does not exist, or lacks a partition this consumer wants.
    ///
    /// Done before any watermark query because librdkafka's leader lookup for that query may auto-create a
    /// missing topic (its source says "possibly creating the topic"), and on `_UNKNOWN_PARTITION` or a timeout the
    /// cause would be unclear. This single-topic metadata request sends `allow.auto.create.topics` (`false` here)
    /// to brokers from 0.11 on, so a missing topic comes back as `UNKNOWN_TOPIC_OR_PART` even where the broker
    /// auto-creates. The mock cluster ignores that flag and auto-creates every topic it is asked about.
    private static func checkExists(
        _ handle: OpaquePointer,
        _ topic: String,
        _ partitions: [KafkaTopicPartition],
        _ deadline: ContinuousClock.Instant,
        _ timeout: Duration
    ) -> CourierError? {
        let wait = milliseconds(until: deadline)
        return RDKafkaTopicMetadata.request(handle, topic: topic, timeoutMilliseconds: wait) { outcome in
            switch outcome {
            case .noTopicHandle:
                return RDKafkaConfig.error(.unprocessable, "creating a handle for topic '\(topic)'",
                                           rd_kafka_last_error())
            case .failed(let err):
                let operation = "fetching the metadata of topic '\(topic)' (ready timeout \(timeout))"
                return RDKafkaConfig.error(.transportUnavailable, operation, err)
            case .answered(nil):
                return CourierError(.transportUnavailable, "the brokers' metadata did not mention topic '\(topic)'")
            case .answered(let entry?):
                return problem(with: entry.pointee, topic: topic, partitions: partitions)
            }
        }
    }

    /// Why the metadata of an existing `topic` rules it out as a reply topic, if it does.
    private static func problem(
        with entry: rd_kafka_metadata_topic,
        topic: String,
        partitions: [KafkaTopicPartition]
    ) -> CourierError? {
        if entry.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART {
            return RDKafkaConfig.error(
                .transportUnavailable,
                "looking up reply topic '\(topic)'",
                entry.err,
                detail: "the topic does not exist; reply topics must be created before use"
            )
        }
        // Other topic errors (such as LEADER_NOT_AVAILABLE just after creation) are transient: the watermark
        // query waits them out, within the same deadline.
        guard entry.err == RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        let missing = partitions.filter { $0.topic == topic && $0.partition >= entry.partition_cnt }
        guard missing.isEmpty else {
            return CourierError(
                .transportUnavailable,
                "reply topic '\(topic)' has \(entry.partition_cnt) partition(s), so \(missing) do not exist; "
                    + "reply topics must be created with enough partitions before use"
            )
        }
        return nil
    }

    /// The milliseconds left until `deadline`, at least 1 (librdkafka reads 0 as "do not wait").
    private static func milliseconds(until deadline: ContinuousClock.Instant) -> Int32 {
        let (seconds, attoseconds) = ContinuousClock.now.duration(to: deadline).components
        return max(1, Int32(clamping: seconds * 1_000 + attoseconds / 1_000_000_000_000_000))
    }
}
