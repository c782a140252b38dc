//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import Synchronization

/// The worker side of the Kafka transport, on the NestJS Kafka wire format.
///
/// It joins ``KafkaConfiguration/groupID`` and subscribes to its handlers' topics (wildcard routes become regex
/// subscriptions). Records of one partition are handled one after another, in offset order (or up to
/// ``KafkaConfiguration/partitionConcurrency`` at once); different partitions run concurrently, up to the
/// microservice's handler limit. Delivery is **at least once**: a record's offset is stored only after its handler
/// finished and, for a request, after its replies were acknowledged by the broker; stored offsets are committed by
/// librdkafka's auto-commit, on revocation and on close. The next record's handler does not wait for those
/// acknowledgements; offsets are stored strictly in order, so an unfinished record holds back the later ones. When a rebalance takes
/// partitions away, the worker holds it until the records it took from them have finished (at most
/// ``KafkaConfiguration/revocationTimeout``), so their offsets are committed before another member takes over. A
/// record whose reply (or dead letter) could not reach the broker is handled again in place, after
/// ``KafkaConfiguration/redeliveryBackoff``, until it is finished; a record the worker did not finish before it
/// stopped is delivered again after the restart or a rebalance.
///
/// Replies go to the request's `kafka_replyTopic` and `kafka_replyPartition`, echoing `kafka_correlationId` byte
/// for byte. An event handler that throws is retried and then dead-lettered or skipped, as
/// ``KafkaConfiguration/eventFailures`` says.
public final class KafkaServerTransport: ServerTransport {
    public var name: String { "kafka" }

    private let configuration: KafkaConfiguration
    private let logger: Logger
    private let clients = Mutex<(consumer: KafkaConsumer?, producer: KafkaProducer?)>((nil, nil))
    /// The producer for streams' later elements, while serving (for tests).
    let streamReplies = Mutex<KafkaStreamReplyProducer?>(nil)
    private let assigned = OneShot<Void>()
    private let topics: KafkaTopicCreator

    /// Creates a worker transport.
    ///
    /// - Parameters:
    ///   - configuration: The cluster, group and librdkafka settings.
    ///   - logger: Where transport events and librdkafka's logs go.
    public init(configuration: KafkaConfiguration, logger: Logger = Logger(label: "courier.kafka.server")) {
        self.configuration = configuration
        self.logger = logger
        self.topics = KafkaTopicCreator(configuration: configuration, logger: logger)
    }

    /// The cluster as a URL, for messages: `kafka://host:port[,…]?group=…`.
    public var url: String { "kafka://\(configuration.bootstrapServers)?group=\(configuration.groupID)" }

    /// Returns once the group has assigned this worker its first partitions (it then receives records), or once
    /// ``serve(patterns:dispatcher:)`` ended without that (it failed, or the worker stopped first).
    ///
    /// Useful in tests and tools: a group join takes seconds (about 3 s on the embedded cluster).
    public func waitUntilAssigned() async {
        await assigned.value
    }

    /// The consumer and producer, once serving: `(KafkaConsumer, KafkaProducer)`.
    public func nativeServer() async throws -> any Sendable {
        let (consumer, producer) = clients.withLock { $0 }
        guard let consumer, let producer else {
            throw CourierError.unavailable("the Kafka worker is not serving")
        }
        return (consumer, producer)
    }

    public func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
        // Whoever waits for the assignment is not left waiting once serving ended (OneShot: the first delivery wins).
        defer { assigned.deliver(()) }
        let subscriptions = try patterns.map(KafkaTopicName.subscription(for:))
        // Regex subscriptions (`^…`) name no topic to create.
        try await topics.ensure(subscriptions.filter { !$0.hasPrefix("^") })
        let producer = try KafkaProducer(
            bootstrapServers: configuration.bootstrapServers,
            properties: configuration.producerSettings,
            logger: logger
        )
        let consumer: KafkaConsumer
        do {
            consumer = try KafkaConsumer(
                bootstrapServers: configuration.bootstrapServers,
                groupID: configuration.groupID,
                topics: subscriptions,
                properties: configuration.consumerSettings,
                revocationTimeout: configuration.revocationTimeout,
                logger: logger
            )
        } catch {
            await producer.close()
            throw error
        }
        clients.withLock { $0 = (consumer, producer) }
        // Without its producers the worker cannot reply: a fatal producer error stops it as the consumer's own does.
        let stopOnFatal: @Sendable (CourierError) -> Void = { [logger] error in
            logger.critical("\(error.message)")
            consumer.fail(error)
        }
        producer.whenFatal(stopOnFatal)
        let streamProducer = KafkaStreamReplyProducer.keepsOrder(configuration.producerSettings)
            ? nil
            : KafkaStreamReplyProducer(bootstrapServers: configuration.bootstrapServers,
                                       properties: configuration.producerSettings, logger: logger,
                                       onFatal: stopOnFatal)
        streamReplies.withLock { $0 = streamProducer }
        logger.info("kafka worker subscribed", metadata: ["group": "\(configuration.groupID)",
                                                         "topics": "\(subscriptions)"])
        let budget = AsyncSemaphore(permits: max(1, configuration.maxBufferedRecords))
        // A reply the broker cannot take is retried by librdkafka for `message.timeout.ms`; the lanes wait for
        // delivery reports no longer than the graceful shutdown lets them (or, stopped without one, not at all), and
        // leave those records uncommitted for the next worker.
        let deliveryWaits = KafkaDeliveryWaitLimit()
        let shutdownWatch = Task {
            await dispatcher.draining()
            guard !Task.isCancelled else { return }
            if let deadline = dispatcher.shutdownDeadline {
                let left = (deadline - .now()).nanoseconds
                if left > 0 { try? await Task.sleep(for: .nanoseconds(left)) }
            }
            guard !Task.isCancelled else { return }
            deliveryWaits.fire()
        }
        defer { shutdownWatch.cancel() }
        let laneContext = LaneContext(
            consumer: consumer,
            producer: producer,
            dispatcher: dispatcher,
            budget: budget,
            policy: configuration.eventFailures,
            topics: topics,
            concurrency: max(1, configuration.partitionConcurrency),
            streamProducer: streamProducer,
            redeliveryBackoff: configuration.redeliveryBackoff,
            maxRedeliveryBackoff: configuration.maxRedeliveryBackoff,
            deliveryWaits: deliveryWaits,
            logger: logger
        )
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                var lanes: [KafkaTopicPartition: Lane] = [:]
                // Lanes of revoked partitions, which may still be finishing (after `revocationTimeout`): a lane for the
                // same partition, assigned again, starts after them, so that one partition never runs in two lanes.
                var revokedLanes: [KafkaTopicPartition: OneShot<Void>] = [:]
                // The lane of the previous message: consecutive records mostly come from one partition (the poll
                // thread takes them in fetched batches), so this spares hashing the topic name for each of them.
                var recent: (topic: String, partition: Int32, lane: Lane?)?
                // Decided once per topic: a dead-letter topic's decision matches the topic against the subscriptions'
                // regular expressions.
                var foreignTopics: [String: Bool] = [:]
                func isForeign(_ topic: String) -> Bool {
                    if let known = foreignTopics[topic] { return known }
                    let foreign = Self.isForeignTopic(topic, subscribed: subscriptions,
                                                      deadLetterSuffix: configuration.eventFailures.deadLetterSuffix)
                    foreignTopics[topic] = foreign
                    return foreign
                }
                for await event in consumer.events {
                    if let message = event.message {
                        let lane: Lane?
                        if let recent, recent.partition == message.partition, recent.topic == message.topic {
                            lane = recent.lane
                        } else if isForeign(message.topic) {
                            lane = nil
                        } else if let existing = lanes[message.topicPartition] {
                            lane = existing
                        } else {
                            let new = Lane(records: KafkaLaneQueue(), finished: OneShot<Void>())
                            lanes[message.topicPartition] = new
                            let previous = revokedLanes.removeValue(forKey: message.topicPartition)
                            group.addTask {
                                await previous?.value
                                await Self.runLane(new.records, context: laneContext)
                                new.finished.deliver(())
                            }
                            lane = new
                        }
                        recent = (message.topic, message.partition, lane)
                        guard let lane else {
                            // A wildcard (`orders.*`) also matches reply topics (`orders.reply`), and `orders.**` dead-letter
                            // topics (`orders.created.dlq`): neither is work.
                            try? consumer.storeOffset(message)
                            continue
                        }
                        guard await budget.acquire() else { break }
                        lane.records.push(message)
                    } else if event.assigned != nil {
                        assigned.deliver(())
                    } else if let revoked = event.revoked {
                        // The consumer holds the rebalance (up to `revocationTimeout`) while the lanes of these
                        // partitions finish the records they hold and store their offsets; librdkafka then commits
                        // them as it gives the partitions up.
                        recent = nil
                        var finishing: [Lane] = []
                        for partition in revoked {
                            guard let lane = lanes.removeValue(forKey: partition) else { continue }
                            lane.records.finish()
                            revokedLanes[partition] = lane.finished
                            finishing.append(lane)
                        }
                        // Their lanes are finished, which stops what `isRevoking` stopped until now.
                        consumer.revocationSeen(revoked)
                        group.addTask {
                            for lane in finishing { await lane.finished.value }
                            consumer.revocationHandled(for: event)
                        }
                    }
                }
                for lane in lanes.values { lane.records.finish() }
            }
        } onCancel: {
            // Stopped at once (not by a graceful shutdown, which bounds the waits by its own deadline).
            if dispatcher.shutdownDeadline == nil { deliveryWaits.fire() }
        }
        clients.withLock { $0 = (nil, nil) }
        if let fatal = consumer.fatalError {
            // The worker stops with it, so that its service fails and its process can be restarted. Not waiting
            // for a consumer that had one to close: librdkafka 2.0.2 was seen to hang destroying a consumer after
            // `rd_kafka_test_fatal_error` (its main thread spinning).
            if fatal == producer.fatalError || fatal == streamProducer?.fatalError {
                await consumer.close()  // a producer's: the consumer itself closes normally
            } else {
                Task.detached { await consumer.close() }
            }
            await streamProducer?.close()
            await producer.close()
            throw fatal
        }
        await consumer.close()
        // Within what is left of a graceful shutdown's timeout: a reply still undelivered then belongs to a record
        // whose offset was not stored, which the next worker handles again.
        let flushTimeout = dispatcher.shutdownDeadline.map { deadline in
            min(Duration.seconds(10), .nanoseconds(max(0, (deadline - .now()).nanoseconds)))
        } ?? .seconds(10)
        await streamProducer?.close(flushTimeout: flushTimeout)
        await producer.close(flushTimeout: flushTimeout)
    }

    /// The records of one partition, handled in order by one task.
    private struct Lane {
        let records: KafkaLaneQueue<KafkaConsumerMessage>
        let finished: OneShot<Void>
    }

    /// Whether `topic` is a reply topic, or this worker's own dead-letter topic, that only a wildcard subscription
    /// brought in: neither is work for the wildcard's handler. A dead letter handled by the handler that failed it
    /// would fail again and be parked in `<topic>.dlq.dlq`, and so on. A dead-letter topic is the worker's own when
    /// the topic it came from (`topic` without `deadLetterSuffix`) is subscribed too; a route written for dead
    /// letters (`orders.*.dlq`) still gets them.
    static func isForeignTopic(_ topic: String, subscribed: [String], deadLetterSuffix: String? = nil) -> Bool {
        guard !subscribed.contains(topic) else { return false }
        if topic.hasSuffix(KafkaTopicName.replySuffix) { return true }
        guard let deadLetterSuffix, !deadLetterSuffix.isEmpty, topic.hasSuffix(deadLetterSuffix) else { return false }
        let origin = String(topic.dropLast(deadLetterSuffix.count))
        return subscribed.contains { subscription in
            // Wildcard routes are subscribed as the regular expressions `KafkaTopicName.subscription` writes.
            guard subscription.hasPrefix("^") else { return subscription == origin }
            return (try? Regex(subscription).wholeMatch(in: origin)) != nil
        }
    }

    /// What every lane of one worker shares.
    private struct LaneContext: Sendable {
        let consumer: KafkaConsumer
        let producer: KafkaProducer
        let dispatcher: any InboundDispatcher
        let budget: AsyncSemaphore
        let policy: KafkaEventFailurePolicy
        let topics: KafkaTopicCreator
        let concurrency: Int
        /// The producer for streams' later elements; `nil` when `producer` keeps them in order itself.
        let streamProducer: KafkaStreamReplyProducer?
        let redeliveryBackoff: Duration
        let maxRedeliveryBackoff: Duration
        /// Ends the waits for delivery reports when the worker stops (see ``KafkaDeliveryWaitLimit``).
        let deliveryWaits: KafkaDeliveryWaitLimit
        let logger: Logger
    }

    /// Handles one partition's records in offset order and stores each offset once its record is done.
    ///
    /// A record is done when its handler finished and the broker acknowledged its replies (or its dead letter).
    /// The next record's handler does not wait for those acknowledgements: the lane hands each record that is not
    /// done yet to its acknowledger, which waits for records strictly in offset order and stores their offsets, so
    /// a record that is not done holds back every later offset of the partition. A record already done when its
    /// handler returns (an event, or a request whose replies were acknowledged), with nothing before it waiting in
    /// the acknowledger, is acknowledged at once without the hand-off, and its offset stored with the rest of its
    /// run (see `unstored` below). With a concurrency above 1, up to that many
    /// handlers of the partition run at once (started in offset order, every record through the acknowledger). Each
    /// record holds a permit of the worker's `budget` until it is acknowledged.
    private static func runLane(_ records: KafkaLaneQueue<KafkaConsumerMessage>, context: LaneContext) async {
        let acknowledging = KafkaLaneQueue<KafkaPendingRecord>()
        let waiting = KafkaLaneBacklog()
        let stop = KafkaLaneStop()
        await withDiscardingTaskGroup { group in
            group.addTask {
                while let pending = await acknowledging.next() {
                    await acknowledge(pending, await pending.finished(), stop: stop, lane: records, context: context)
                    waiting.acknowledged()
                }
            }
            let slots = context.concurrency > 1 ? AsyncSemaphore(permits: context.concurrency) : nil
            // The last record the lane acknowledged itself whose offset is not stored yet. Offsets are stored once
            // for a run of records instead of once per record (each store builds a partition list and takes
            // librdkafka's locks): before the lane waits for more records, before a record goes to the
            // acknowledger (so stored offsets only grow), when the lane ends (before a revocation goes on), and
            // every ``storeEvery`` records while the lane never runs dry, so the auto-commit keeps up.
            var unstored: KafkaConsumerMessage?
            var unstoredRun = 0
            while true {
                var next = records.nextIfBuffered()
                if next == nil {
                    store(&unstored, context: context)
                    next = await records.next()
                }
                guard let record = next else { break }
                if stop.isRaised {
                    // Left unacknowledged: it comes back after a restart or a rebalance.
                    context.budget.release()
                    continue
                }
                guard let slots else {
                    // A record gets a pending state only if its handler replies (an event's outcome is final).
                    var replying: KafkaPendingRecord?
                    let handled = await process(record, &replying, context: context, in: &group)
                    replying?.handled(handled)
                    let finished: HandlingOutcome? = if let replying { replying.finishedOutcome } else { handled }
                    // In order: only when nothing earlier still waits in the acknowledger.
                    if waiting.isEmpty, let outcome = finished {
                        defer { context.budget.release() }
                        if stop.isRaised {
                            // The acknowledger stopped the lane while this record ran: store nothing more.
                        } else if outcome.shouldAcknowledge {
                            unstored = record
                            unstoredRun += 1
                            if unstoredRun == storeEvery {
                                unstoredRun = 0
                                store(&unstored, context: context)
                            }
                        } else {
                            // Not finished: storing a later offset would skip it, so the lane handles it again
                            // before it goes on.
                            store(&unstored, context: context)
                            if await redeliver(record, after: replying?.deliveryFailure, lane: records,
                                               context: context)
                            {
                                unstored = record
                                unstoredRun += 1
                            } else {
                                stop.raise()
                            }
                        }
                    } else {
                        let pending = replying ?? KafkaPendingRecord(record, waitLimit: context.deliveryWaits)
                        if replying == nil { pending.handled(handled) }
                        store(&unstored, context: context)
                        waiting.added()
                        acknowledging.push(pending)
                    }
                    continue
                }
                let pending = KafkaPendingRecord(record, waitLimit: context.deliveryWaits)
                waiting.added()
                acknowledging.push(pending)
                guard await slots.acquire() else {
                    pending.handled(.abandoned)
                    continue
                }
                group.addTask {
                    let outcome = await withDiscardingTaskGroup { handlers in
                        var replying: KafkaPendingRecord? = pending
                        return await process(record, &replying, context: context, in: &handlers)
                    }
                    slots.release()
                    pending.handled(outcome)
                }
            }
            store(&unstored, context: context)
            acknowledging.finish()
        }
    }

    /// Handles `record` again, in place, until it is finished: its handler finished before, but a reply (or its
    /// dead letter) did not reach the broker (`failure`, when known), so the caller may not have the answer. The
    /// partition's later offsets cannot be stored before this one, so the lane waits for it, each attempt after a
    /// backoff twice the one before (``KafkaConfiguration/redeliveryBackoff``, up to
    /// ``KafkaConfiguration/maxRedeliveryBackoff``), as Spring Kafka's error handler seeks back to a failed record.
    ///
    /// - Returns: Whether the record is finished now; `false` if the worker stopped or the partition was revoked
    ///   first (`lane` finished, or the consumer announced the revocation): the record then comes back after the
    ///   restart, or to the partition's next owner.
    private static func redeliver(
        _ record: KafkaConsumerMessage,
        after failure: (any Error)?,
        lane: KafkaLaneQueue<KafkaConsumerMessage>,
        context: LaneContext
    ) async -> Bool {
        var attempt = 1
        var reason = failure.map { "\($0)" } ?? "the worker could not finish it"
        let clock = ContinuousClock()
        // The revocation can be announced before the lane is finished: the worker's reader may be waiting for a
        // budget permit (held by this record and those behind it) and not reach the `revoked` event.
        let partition = record.topicPartition
        let revoked = { lane.isFinished || context.consumer.isRevoking(partition) }
        while !Task.isCancelled, !revoked() {
            let backoff = min(context.maxRedeliveryBackoff, context.redeliveryBackoff * (1 << min(attempt - 1, 16)))
            context.logger.warning(
                "a record's reply could not reach the broker; its partition waits while the record is handled again",
                metadata: ["topic": "\(record.topic)", "partition": "\(record.partition)", "offset": "\(record.offset)",
                           "attempt": "\(attempt)", "in": "\(backoff)", "reason": "\(reason)"]
            )
            // In steps, so that a revocation (which waits for this lane) is not held up by a long backoff.
            let end = clock.now + backoff
            while clock.now < end, !Task.isCancelled, !revoked() {
                try? await Task.sleep(for: min(.milliseconds(100), clock.now.duration(to: end)))
            }
            if Task.isCancelled || revoked() { break }
            var replying: KafkaPendingRecord?
            let handled = await withDiscardingTaskGroup { handlers in
                await process(record, &replying, context: context, in: &handlers)
            }
            let outcome: HandlingOutcome
            if let replying {
                replying.handled(handled)
                outcome = await replying.finished()
                reason = replying.deliveryFailure.map { "\($0)" } ?? reason
            } else {
                outcome = handled
            }
            if outcome.shouldAcknowledge {
                context.logger.info(
                    "a record whose reply could not reach the broker was handled again and is finished",
                    metadata: ["topic": "\(record.topic)", "partition": "\(record.partition)",
                               "offset": "\(record.offset)", "attempts": "\(attempt + 1)"]
                )
                return true
            }
            attempt += 1
        }
        return false
    }

    /// The most records a busy lane acknowledges before it stores their offset.
    static let storeEvery = 64

    /// Stores the offset of `record`, if any, and clears it.
    private static func store(_ record: inout KafkaConsumerMessage?, context: LaneContext) {
        guard let message = record else { return }
        record = nil
        do {
            try context.consumer.storeOffset(message)
        } catch {
            context.logger.debug("could not store offset \(message.offset) of \(message.topicPartition): \(error)")
        }
    }

    /// Stores a finished record's offset (unless the lane has stopped) and returns its budget permit. A record that
    /// is not finished is handled again first; if the worker stops (or the partition is revoked) before it is
    /// finished, the lane stops.
    private static func acknowledge(
        _ pending: KafkaPendingRecord,
        _ outcome: HandlingOutcome,
        stop: KafkaLaneStop,
        lane: KafkaLaneQueue<KafkaConsumerMessage>,
        context: LaneContext
    ) async {
        defer { context.budget.release() }
        if stop.isRaised { return }
        guard outcome.shouldAcknowledge else {
            // Not finished: storing a later offset would skip it.
            guard await redeliver(pending.record, after: pending.deliveryFailure, lane: lane, context: context) else {
                stop.raise()
                return
            }
            var record: KafkaConsumerMessage? = pending.record
            store(&record, context: context)
            return
        }
        var record: KafkaConsumerMessage? = pending.record
        store(&record, context: context)
    }

    /// Runs one record's handler (retrying a failing event in place, then dead-lettering it as the policy says);
    /// returns once the handler finished and its replies are enqueued.
    ///
    /// `pending` is the record's pending state: a handler that replies needs one (its replies' delivery reports
    /// go there), and one is created if it is nil.
    private static func process(
        _ record: KafkaConsumerMessage,
        _ pending: inout KafkaPendingRecord?,
        context: LaneContext,
        in handlers: inout DiscardingTaskGroup
    ) async -> HandlingOutcome {
        let policy = context.policy
        let inbound = KafkaRecordCodec.decodeRequest(KafkaRecordModel(record))
        var outcome = await handle(record, &pending, inbound, context: context, in: &handlers)
        guard inbound.request.isEvent, outcome.isFailure else { return outcome }
        // Retry in place: the partition's order is kept, and the backoff bounds how long it waits.
        var attempts = 1
        while outcome.isFailure, attempts <= policy.retries, !Task.isCancelled {
            try? await Task.sleep(for: policy.backoff(before: attempts))
            if Task.isCancelled { break }
            attempts += 1
            outcome = await handle(record, &pending, inbound, context: context, in: &handlers)
        }
        if Task.isCancelled, outcome.isFailure { return .abandoned }
        if outcome.isFailure, let suffix = policy.deadLetterSuffix {
            do {
                try await deadLetter(record, suffix: suffix, error: outcome.error, attempts: attempts,
                                     producer: context.producer, topics: context.topics)
            } catch let error as CourierError where Self.refusesEveryDeadLetter(error, topic: record.topic + suffix) {
                // Refused for what it is (an illegal dead-letter topic name, a record too large): every redelivery
                // would be refused again and block the partition forever, so the record counts as failed, as a
                // reply refused for what it is does.
                context.logger.error("cannot ever dead-letter \(record.topicPartition)@\(record.offset), skipping it: \(error)")
                return outcome
            } catch {
                // Not parked: leave it unacknowledged so it comes back rather than being lost.
                context.logger.error("could not dead-letter \(record.topicPartition)@\(record.offset): \(error)")
                return .abandoned
            }
        }
        return outcome
    }

    /// Whether a dead letter to `topic` failed with `error` for what it is, so that no redelivery could produce it:
    /// the topic name is not legal, or the record is too large. (A missing topic may still be created: that record
    /// comes back.)
    private static func refusesEveryDeadLetter(_ error: CourierError, topic: String) -> Bool {
        error.code == .payloadTooLarge || (try? KafkaTopicName.check(topic)) == nil
    }

    /// Publishes a record whose handler kept failing to `<topic><suffix>`, and waits for the broker.
    private static func deadLetter(
        _ record: KafkaConsumerMessage,
        suffix: String,
        error: (any Error)?,
        attempts: Int,
        producer: KafkaProducer,
        topics: KafkaTopicCreator
    ) async throws {
        let topic = record.topic + suffix
        try KafkaTopicName.validate(topic)
        try await topics.ensure([topic])
        var headers = record.headers.map { ($0.name, $0.value ?? []) }
        headers.append((KafkaDeadLetterHeader.topic, Array(record.topic.utf8)))
        headers.append((KafkaDeadLetterHeader.partition, Array(String(record.partition).utf8)))
        headers.append((KafkaDeadLetterHeader.offset, Array(String(record.offset).utf8)))
        headers.append((KafkaDeadLetterHeader.error, Array((error.map { "\($0)" } ?? "unknown").utf8)))
        headers.append((KafkaDeadLetterHeader.attempts, Array(String(attempts).utf8)))
        _ = try await producer.send(topic: topic, key: record.key, value: record.value, headers: headers)
    }

    private static func handle(
        _ record: KafkaConsumerMessage,
        _ pending: inout KafkaPendingRecord?,
        _ inbound: KafkaRecordCodec.InboundRequest,
        context: LaneContext,
        in handlers: inout DiscardingTaskGroup
    ) async -> HandlingOutcome {
        var writer: (any ReplyWriter)?
        if let replyTo = inbound.replyTo, let correlation = inbound.correlationBytes {
            let replying = pending ?? KafkaPendingRecord(record, waitLimit: context.deliveryWaits)
            pending = replying
            writer = KafkaReplyWriter(producer: context.producer, address: replyTo, correlationBytes: correlation,
                                      pending: replying, streamProducer: context.streamProducer)
        }
        let metadata = TransportMetadata(
            transport: "kafka",
            channel: record.topic,
            partition: Int(record.partition),
            offset: String(record.offset),
            key: record.key
        )
        if context.concurrency == 1 {
            // One handler at a time: run it in the lane's own task (no task and no hand-off per record).
            return await context.dispatcher.handleInPlace(
                InboundMessage(request: inbound.request, metadata: metadata, replyWriter: writer)
            )
        }
        let outcome = OneShot<HandlingOutcome>()
        let message = InboundMessage(
            request: inbound.request,
            metadata: metadata,
            replyWriter: writer,
            onHandled: { outcome.deliver($0) }
        )
        await context.dispatcher.dispatch(message, in: &handlers)
        return await outcome.value
    }
}

/// Produces the replies to one request without waiting for the broker; the record's lane waits for their delivery
/// reports before it stores the record's offset.
struct KafkaReplyWriter: ReplyWriter {
    let producer: KafkaProducer
    let address: KafkaRecordCodec.ReplyAddress
    let correlationBytes: [UInt8]
    let pending: KafkaPendingRecord
    /// The producer for a stream's later elements, when `producer` may reorder them (see ``write(_:)``).
    let streamProducer: KafkaStreamReplyProducer?

    /// Enqueues `reply`. A request's replies (a stream's elements) reach the broker in order. librdkafka may reorder
    /// retried batches unless the producer is idempotent or has one request in flight per connection; the worker's
    /// producer has neither by default. So the first reply goes out through it without waiting (a single reply, the
    /// common case, never waits), and the second waits until the first is acknowledged, then goes out, with every
    /// later one, through the worker's ``KafkaStreamReplyProducer``, which keeps them in order: a stream's elements
    /// are enqueued one after another and batched. When the worker's producer keeps the order itself, every reply
    /// goes through it without waiting.
    ///
    /// - Throws: The delivery failure of an earlier reply of this request, or why this one could not be enqueued.
    func write(_ reply: WireReply) async throws {
        let record = try KafkaRecordCodec.encodeReply(reply, correlationBytes: correlationBytes, to: address)
        var producer = self.producer
        let earlier = pending.countReply()
        if let streamProducer, earlier > 0 {
            if earlier == 1, let failure = await pending.deliveriesSettled() { throw failure }
            producer = try streamProducer.producer()
        }
        if let failure = pending.deliveryFailure { throw failure }
        let pending = self.pending
        // Announced first: the report can come before the call returns. While librdkafka's queue is full
        // (`queue.buffering.max.messages`), the producer waits for deliveries to make room.
        pending.expectDelivery()
        do {
            try await producer.produceWhenRoom(record, onDelivery: { pending.delivered($0) })
        } catch {
            pending.withdrawExpectedDelivery()
            throw error
        }
    }
}
