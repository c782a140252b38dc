//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Logging
import NIOCore
import Synchronization

/// A Kafka consumer-group member over the system librdkafka, delivering at least once.
///
/// It subscribes to its topics at once and delivers ``events``: messages, and the group's partition assignments and
/// revocations, in order. Offsets are never stored automatically (`enable.auto.offset.store=false`): call
/// ``storeOffset(_:)`` once a message is handled, and librdkafka's auto-commit commits what was stored (and
/// ``close()`` commits the rest). A message that was delivered but never stored is delivered again after a restart
/// or a rebalance.
///
/// A dedicated thread polls librdkafka and runs the rebalance callback; it never blocks Swift concurrency's pool.
public final class KafkaConsumer: Sendable {
    /// The consumer's events. Iterate it once; it ends after ``close()``.
    public let events: KafkaConsumerEvents

    private let client: RDKafkaClient
    private let context: ConsumerContext

    /// Creates a consumer, subscribes it and starts its poll thread.
    ///
    /// - Parameters:
    ///   - bootstrapServers: The brokers to contact first, as `host:port[,host:port…]`.
    ///   - groupID: The consumer group to join.
    ///   - topics: The topics to subscribe to.
    ///   - properties: Any other librdkafka configuration properties, such as `auto.offset.reset` or
    ///     `session.timeout.ms`. Default: none (librdkafka's defaults, so new groups start at the latest offset).
    ///     `enable.auto.offset.store` is always `false` and `log.queue` always `true`.
    ///   - lowWatermark: How few buffered events make a paused consumer resume. Default: `2_000`.
    ///   - highWatermark: How many buffered events make the reader count as behind. Default: `10_000`.
    ///   - pauseDelay: How long the reader may stay behind before the consumer pauses its partitions; until then the
    ///     poll thread only stops polling, which keeps librdkafka's prefetched messages (pausing drops them, and
    ///     resuming restarts fetching slowly). Default: `.milliseconds(500)`.
    ///   - revocationTimeout: If set, a revocation waits (up to this long) until the reader calls
    ///     ``revocationHandled()`` before the partitions are given up, so that records the reader finishes
    ///     meanwhile are stored and committed instead of being handled again by their next owner. Default: nil (the
    ///     partitions are given up as soon as the `revoked` event is queued).
    ///   - logger: Where librdkafka's logs and errors go. Default: a logger labelled `courier.kafka.consumer`.
    /// - Throws: ``CourierError/Code/unprocessable`` for a rejected property, bad watermarks or a failed
    ///   subscription, ``CourierError/Code/transportUnavailable`` if the handle cannot be created.
    public init(
        bootstrapServers: String,
        groupID: String,
        topics: [String],
        properties: [String: String] = [:],
        lowWatermark: Int = 2_000,
        highWatermark: Int = 10_000,
        pauseDelay: Duration = .milliseconds(500),
        revocationTimeout: Duration? = nil,
        logger: Logger = Logger(label: "courier.kafka.consumer")
    ) throws {
        guard lowWatermark >= 0, lowWatermark <= highWatermark else {
            throw CourierError(.unprocessable, "watermarks need 0 <= low (\(lowWatermark)) <= high (\(highWatermark))")
        }
        guard pauseDelay >= .zero else {
            throw CourierError(.unprocessable, "pauseDelay must not be negative, not \(pauseDelay)")
        }
        var properties = properties
        properties["bootstrap.servers"] = bootstrapServers
        properties["group.id"] = groupID
        properties["enable.auto.offset.store"] = "false"

        let backPressure = ConsumerBackPressure()
        let queue = ConsumerEventQueue(lowWatermark: lowWatermark, highWatermark: highWatermark, delegate: backPressure)
        let context = ConsumerContext(backPressure: backPressure, source: queue, logger: logger,
                                      pauseDelay: pauseDelay, revocationTimeout: revocationTimeout)
        let client = try RDKafkaClient(
            type: RD_KAFKA_CONSUMER,
            properties: properties,
            events: 0,
            configure: { conf in
                rd_kafka_conf_set_rebalance_cb(conf, consumerRebalanceCallback)
                // Unretained: the poll thread's closures below keep the context alive for the handle's lifetime.
                rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(context).toOpaque())
            },
            eventsOnMainQueue: false,
            logger: logger
        )
        // Messages, errors and rebalances now all come out of rd_kafka_consumer_poll.
        rd_kafka_poll_set_consumer(client.handle)
        let list = rd_kafka_topic_partition_list_new(Int32(clamping: topics.count))!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for topic in topics {
            // -1 is RD_KAFKA_PARTITION_UA: the group decides the partitions.
            rd_kafka_topic_partition_list_add(list, topic, -1)
        }
        let err = rd_kafka_subscribe(client.handle, list)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            // shutdown() destroys the handle on a thread of its own; the context (the conf opaque) must outlive it.
            Task.detached {
                await client.shutdown()
                withExtendedLifetime(context) {}
            }
            throw RDKafkaConfig.error(.unprocessable, "subscribing to \(topics)", err)
        }
        client.start(
            name: "rdkafka-consumer",
            poll: { handle in context.pollStep(handle) },
            didStop: { [client] in
                // On the poll thread, because it runs the final revoke callback and commits stored offsets.
                let err = rd_kafka_consumer_close(client.handle)
                if err != RD_KAFKA_RESP_ERR_NO_ERROR {
                    context.logger.warning("rd_kafka_consumer_close: \(String(cString: rd_kafka_err2str(err)))")
                }
                context.source.finish()
            }
        )
        self.client = client
        self.context = context
        self.events = KafkaConsumerEvents(queue: queue)
    }

    /// Marks `message` handled: its offset + 1 is committed with the next auto-commit (or at ``close()``).
    ///
    /// Non-blocking and safe from any task.
    ///
    /// - Throws: ``CourierError/Code/unprocessable`` naming librdkafka's error (for example when the partition is no
    ///   longer assigned), ``CourierError/Code/transportUnavailable`` if the consumer is closed.
    public func storeOffset(_ message: KafkaConsumerMessage) throws {
        let err = try client.withLiveHandle { handle -> rd_kafka_resp_err_t in
            let list = rd_kafka_topic_partition_list_new(1)!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            // withCString: the implicit String-to-pointer conversion copies a short (inline) topic name into a new
            // array for every call, and offsets are stored once per record.
            message.topic.withCString { topic in
                rd_kafka_topic_partition_list_add(list, topic, message.partition).pointee.offset = message.offset + 1
            }
            let err = rd_kafka_offsets_store(handle, list)
            // The call's own result is only "some failed"; the per-partition error says why.
            return err == RD_KAFKA_RESP_ERR_NO_ERROR ? list.pointee.elems[0].err : err
        }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let operation = "storing offset \(message.offset + 1) of \(message.topicPartition)"
            throw RDKafkaConfig.error(.unprocessable, operation, err)
        }
    }

    /// Lets a pending revocation go on: call it once the records of the partitions in the last `revoked` event are
    /// finished and their offsets stored. Only meaningful with a `revocationTimeout`; otherwise it does nothing.
    /// Prefer ``revocationHandled(for:)``, which cannot release a later revocation by mistake.
    ///
    /// Non-blocking and safe from any task.
    public func revocationHandled() {
        context.revocation?.gate.release()
    }

    /// Lets the revocation `event` announced go on, if the consumer still holds it: call it once the records of
    /// its partitions are finished and their offsets stored. A call for a revocation that already timed out does
    /// nothing, so it cannot cut a later one short. Only meaningful with a `revocationTimeout`.
    ///
    /// Non-blocking and safe from any task.
    public func revocationHandled(for event: KafkaConsumerEvent) {
        guard let revocation = event.revocation else { return }
        context.revocation?.gate.release(revocation: revocation)
    }

    /// Whether the group is taking `partition` away (or has taken it): true from the moment the rebalance callback
    /// announces the revocation, before the `revoked` event is read, until ``revocationSeen(_:)``.
    ///
    /// Non-blocking and safe from any task.
    func isRevoking(_ partition: KafkaTopicPartition) -> Bool {
        context.revoking.withLock { $0[partition] != nil }
    }

    /// The reader has handled the `revoked` event of `partitions` (so they may be assigned and read again).
    func revocationSeen(_ partitions: [KafkaTopicPartition]) {
        context.revoking.withLock { revoking in
            for partition in partitions {
                guard let count = revoking[partition] else { continue }
                revoking[partition] = count > 1 ? count - 1 : nil
            }
        }
    }

    /// Leaves the group and stops: the final revocation is delivered, stored offsets are committed, and then
    /// ``events`` ends. Idempotent.
    public func close() async {
        await client.shutdown()
    }

    /// Calls `body` with the raw `rd_kafka_t *` for librdkafka functions Courier does not wrap.
    ///
    /// The handle is owned by the consumer: do not destroy or poll it, and do not use it concurrently with or after
    /// ``close()``.
    public func withUnsafeHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        precondition(!client.isClosed, "KafkaConsumer.withUnsafeHandle called after close()")
        return try body(client.handle)
    }

    /// The fatal error that ended ``events`` early, if one did: librdkafka's (the consumer was fenced, for example),
    /// or one given to ``fail(_:)``. Such a consumer can do nothing more.
    public var fatalError: CourierError? { context.fatal.error }

    /// Ends ``events`` (after the events already buffered) because of `error`, for example its worker's producer's
    /// fatal error, which leaves the worker unable to reply; ``fatalError`` then returns it.
    func fail(_ error: CourierError) {
        context.fail(error)
    }

    /// How many times the consumer paused its partitions because the reader fell behind.
    var pauseCount: Int { context.backPressure.state.withLock { $0.pauses } }

    deinit { client.requestStop() }
}
