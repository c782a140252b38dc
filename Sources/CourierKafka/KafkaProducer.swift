//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Logging
import Synchronization

/// A Kafka producer over the system librdkafka.
///
/// Three ways to produce:
/// - ``produce(topic:partition:key:value:headers:)`` enqueues a message without waiting and returns its id. It
///   throws at once when librdkafka's local queue is full (bounded by `queue.buffering.max.messages` and
///   `queue.buffering.max.kbytes`): that is the producer's backpressure, for callers that must not wait.
/// - ``produceWhenRoom(topic:partition:key:value:headers:)`` does the same, but waits for room in a full queue.
/// - ``send(topic:partition:key:value:headers:)`` waits for room too, then for the broker's acknowledgement.
///
/// Delivery reports, logs and errors arrive as librdkafka events on one dedicated thread per producer, which never
/// blocks Swift concurrency's pool. librdkafka's logs go to the `logger`.
///
/// Call ``close(flushTimeout:)`` when done: it delivers what is queued, then stops the thread and frees the handle.
public final class KafkaProducer: Sendable {
    private let client: RDKafkaClient
    private let deliveries: PendingDeliveries
    private let logger: Logger
    /// Signalled when the first ``close(flushTimeout:)`` has finished flushing, so later calls do not stop the
    /// poll thread under it.
    private let closeFlushed = Completion()
    /// The topics produced to so far, each looked up once so its first messages are not held (see
    /// ``ProducerTopicLookups``).
    private let topicLookups: ProducerTopicLookups

    /// Creates a producer and starts its poll thread.
    ///
    /// - Parameters:
    ///   - bootstrapServers: The brokers to contact first, as `host:port[,host:port…]`.
    ///   - properties: Any other librdkafka configuration properties (see librdkafka's CONFIGURATION.md), such as
    ///     `linger.ms` or `acks`. Default: none (librdkafka's defaults; `log.queue` is always `true`).
    ///   - logger: Where librdkafka's logs and errors go. Default: a logger labelled `courier.kafka.producer`.
    /// - Throws: ``CourierError/Code/unprocessable`` naming a property librdkafka rejects, or
    ///   ``CourierError/Code/transportUnavailable`` if the handle cannot be created.
    public init(
        bootstrapServers: String,
        properties: [String: String] = [:],
        logger: Logger = Logger(label: "courier.kafka.producer")
    ) throws {
        var properties = properties
        properties["bootstrap.servers"] = bootstrapServers
        let client = try RDKafkaClient(
            type: RD_KAFKA_PRODUCER,
            properties: properties,
            events: RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG,
            logger: logger
        )
        let deliveries = PendingDeliveries()
        let topicLookups = ProducerTopicLookups()
        client.start(
            name: "rdkafka-producer",
            onEvent: { event in
                guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_DR else { return }
                deliveries.deliver(event, logger: logger)
            },
            beforeWait: { handle in topicLookups.lookUpPending(handle, logger: logger) },
            didStop: {
                deliveries.failAll(
                    CourierError.unavailable("the Kafka producer closed before the message was delivered")
                )
            }
        )
        self.client = client
        self.deliveries = deliveries
        self.logger = logger
        self.topicLookups = topicLookups
    }

    /// Enqueues a message without waiting for the broker.
    ///
    /// librdkafka copies every byte, so the arguments need not outlive the call. The message's delivery report is
    /// logged if delivery fails; use ``send(topic:partition:key:value:headers:)`` to await it.
    ///
    /// - Parameters:
    ///   - topic: The topic to write to.
    ///   - partition: The partition, or nil to let the partitioner choose (by key hash, if there is a key).
    ///     Default: nil.
    ///   - key: The message key, or nil for none. Default: nil.
    ///   - value: The message value, or nil for a null value (a tombstone on compacted topics).
    ///   - headers: Headers in order; names may repeat. Default: none.
    /// - Returns: The message's id, unique within this producer.
    /// - Throws: ``CourierError/Code/transportUnavailable`` if the queue is full or the producer is closing or
    ///   closed, ``CourierError/Code/unprocessable`` if librdkafka rejects the message (for example too large).
    @discardableResult
    public func produce(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8]?,
        headers: [(String, [UInt8])] = []
    ) throws -> UInt64 {
        guard let id = try enqueue(topic: topic, partition: partition, key: key, value: value, headers: headers) else {
            throw RDKafkaConfig.error(.transportUnavailable, "producing to '\(topic)'", RD_KAFKA_RESP_ERR__QUEUE_FULL)
        }
        return id
    }

    /// Enqueues a message without waiting for the broker, first waiting for room while librdkafka's local queue is
    /// full (checking every millisecond).
    ///
    /// - Parameters: the same as ``produce(topic:partition:key:value:headers:)``.
    /// - Returns: The message's id, unique within this producer.
    /// - Throws: What ``produce(topic:partition:key:value:headers:)`` throws for anything but a full queue, or
    ///   `CancellationError` if the task is cancelled while it waits for room.
    @discardableResult
    public func produceWhenRoom(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8]?,
        headers: [(String, [UInt8])] = []
    ) async throws -> UInt64 {
        try await produceWhenRoom(topic: topic, partition: partition, key: key, value: value, headers: headers,
                                  onDelivery: nil)
    }

    /// ``produceWhenRoom(topic:partition:key:value:headers:)`` with the delivery report going to `onDelivery`, which
    /// runs exactly once if the message was enqueued (on the poll thread, so it must not block; or when the
    /// producer closes first), and never if this throws; and, with a `deadline`, the "queue full" error of
    /// ``produce(topic:partition:key:value:headers:)`` once it passes with the queue still full.
    @discardableResult
    func produceWhenRoom(
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [(String, [UInt8])],
        onDelivery: DeliveryWaiter?,
        until deadline: ContinuousClock.Instant? = nil
    ) async throws -> UInt64 {
        while true {
            if let id = try enqueue(topic: topic, partition: partition, key: key, value: value, headers: headers,
                                    onDelivery: onDelivery) {
                return id
            }
            if let deadline, ContinuousClock.now >= deadline {
                throw RDKafkaConfig.error(.transportUnavailable, "producing to '\(topic)'", RD_KAFKA_RESP_ERR__QUEUE_FULL)
            }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Enqueues a message and waits for the broker to acknowledge it; while librdkafka's local queue is full, it
    /// first waits for room (checking every millisecond).
    ///
    /// Cancelling the calling task does not withdraw an enqueued message: the wait ends when librdkafka reports
    /// delivery or failure (at the latest after `delivery.timeout.ms`), or when the producer closes. Cancelled
    /// while waiting for room, it throws `CancellationError` and enqueues nothing.
    ///
    /// - Parameters: the same as ``produce(topic:partition:key:value:headers:)``.
    /// - Returns: Where the message was stored.
    /// - Throws: What ``produce(topic:partition:key:value:headers:)`` throws for anything but a full queue,
    ///   ``CourierError/Code/transportUnavailable`` naming librdkafka's error if delivery failed, or if the producer
    ///   closed first.
    public func send(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8]?,
        headers: [(String, [UInt8])] = []
    ) async throws -> KafkaDeliveryReport {
        while true {
            // nil: the queue was full and nothing was enqueued.
            let result = await withCheckedContinuation {
                (continuation: CheckedContinuation<Result<KafkaDeliveryReport, any Error>?, Never>) in
                do {
                    let queued = try produce(
                        topic: topic, partition: partition, key: key, value: value, headers: headers,
                        onDelivery: { continuation.resume(returning: $0) }
                    )
                    if !queued { continuation.resume(returning: nil) }
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
            if let result { return try result.get() }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    /// Enqueues a message whose delivery report goes to `onDelivery`, unless librdkafka's local queue is full.
    ///
    /// For callers that pipeline: they go on while the broker acknowledges. `onDelivery` runs exactly once if the
    /// message was enqueued (on the poll thread, so it must not block; or when the producer closes first), and
    /// never if this returns `false` or throws.
    ///
    /// - Returns: `false`, enqueueing nothing, when the queue is full.
    /// - Throws: What ``produce(topic:partition:key:value:headers:)`` throws for anything but a full queue.
    func produce(
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [(String, [UInt8])],
        onDelivery: @escaping @Sendable (Result<KafkaDeliveryReport, any Error>) -> Void
    ) throws -> Bool {
        try enqueue(topic: topic, partition: partition, key: key, value: value, headers: headers,
                    onDelivery: onDelivery) != nil
    }

    /// Waits until every enqueued message is delivered (or has failed) and its report handled.
    ///
    /// This polls `rd_kafka_outq_len` rather than calling `rd_kafka_flush`: with the event API on, `rd_kafka_flush`
    /// would block a thread and does not serve the reports anyway.
    ///
    /// - Parameter timeout: How long to wait.
    /// - Throws: ``CourierError/Code/timedOut`` if messages remain after `timeout`,
    ///   ``CourierError/Code/transportUnavailable`` if the producer is closed, `CancellationError` if the task is
    ///   cancelled.
    public func flush(timeout: Duration) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while true {
            let remaining = try client.withLiveHandle { rd_kafka_outq_len($0) }
            if remaining == 0 { return }
            if clock.now >= deadline {
                throw CourierError(
                    .timedOut,
                    "\(remaining) Kafka message(s) still queued after flushing for \(timeout)"
                )
            }
            try await Task.sleep(for: .milliseconds(2))
        }
    }

    /// Delivers what is queued (waiting at most `flushTimeout`), then stops the poll thread and frees the handle.
    ///
    /// New messages are refused from the moment this is called. Messages still undelivered after the flush fail
    /// with ``CourierError/Code/transportUnavailable``. The flush runs even when the calling task is cancelled (as a
    /// service's is when it stops): messages `emit` already accepted are delivered, within `flushTimeout`.
    /// Idempotent; concurrent calls all return once closed.
    ///
    /// - Parameter flushTimeout: The longest to wait for queued messages. Default: `.seconds(10)`.
    public func close(flushTimeout: Duration = .seconds(10)) async {
        if deliveries.stopAccepting() {
            do {
                // In a task of its own, which the caller's cancellation does not reach.
                try await Task { try await self.flush(timeout: flushTimeout) }.value
            } catch {
                logger.warning("closing the Kafka producer without delivering everything: \(error)")
            }
            closeFlushed.signal()
        } else {
            await closeFlushed.wait()
        }
        await client.shutdown()
    }

    /// The producer's fatal error, once librdkafka reported one (an idempotent producer's broken sequence, for
    /// example): from then on every message fails.
    public var fatalError: CourierError? { client.fatal.error }

    /// Runs `body` (on the poll thread) once the producer has a fatal error, or now if it has one.
    func whenFatal(_ body: @escaping @Sendable (CourierError) -> Void) {
        client.fatal.onRaise(body)
    }

    /// Calls `body` with the raw `rd_kafka_t *` for librdkafka functions Courier does not wrap.
    ///
    /// The handle is owned by the producer: do not destroy it, do not poll its main queue (the producer's thread
    /// does), and do not use it concurrently with or after ``close(flushTimeout:)``.
    public func withUnsafeHandle<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        precondition(!client.isClosed, "KafkaProducer.withUnsafeHandle called after close()")
        return try body(client.handle)
    }

    deinit {
        // Without close(), queued messages are dropped: the poll thread stops and destroys the handle.
        _ = deliveries.stopAccepting()
        closeFlushed.signal()
        client.requestStop()
    }

    // MARK: - Enqueueing

    /// Reserves an id (registering `onDelivery` for its report) and enqueues the message; returns the id, or `nil`
    /// when librdkafka's queue is full (nothing is enqueued, and `onDelivery` never runs).
    private func enqueue(
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [(String, [UInt8])],
        onDelivery: DeliveryWaiter? = nil
    ) throws -> UInt64? {
        // Registered before enqueueing: the report can arrive before rd_kafka_produceva returns.
        let id = try deliveries.reserveID(awaitedBy: onDelivery)
        // A waiter gone already was failed by a close that stopped the poll thread meanwhile: it has run, so the
        // message counts as handed over (and failed), and this call must neither throw nor report a full queue.
        do {
            if try enqueueUnlessFull(id: id, topic: topic, partition: partition, key: key, value: value,
                                     headers: headers) {
                return id
            }
        } catch {
            if onDelivery != nil, !deliveries.withdraw(id) { return id }
            throw error
        }
        if onDelivery != nil, !deliveries.withdraw(id) { return id }
        return nil
    }

    /// Enqueues a message; returns `false` if librdkafka's queue is full.
    private func enqueueUnlessFull(
        id: UInt64,
        topic: String,
        partition: Int32?,
        key: [UInt8]?,
        value: [UInt8]?,
        headers: [(String, [UInt8])]
    ) throws -> Bool {
        let message = ProduceArguments(topic: topic, key: key, value: value, headers: headers)
        let result: EnqueueResult = try client.withLiveHandle { handle in
            message.withValues(partition: partition, id: id) { values -> EnqueueResult in
                guard let error = rd_kafka_produceva(handle, values.baseAddress, values.count) else { return .queued }
                // The error object is ours to destroy.
                defer { rd_kafka_error_destroy(error) }
                let code = rd_kafka_error_code(error)
                if code == RD_KAFKA_RESP_ERR__QUEUE_FULL { return .queueFull }
                let detail = rd_kafka_error_string(error).map { String(cString: $0) }
                return .failed(RDKafkaConfig.error(PendingDeliveries.code(of: code), "producing to '\(topic)'", code,
                                                   detail: detail))
            }
        }
        switch result {
        case .queued:
            if topicLookups.produced(to: topic) { client.wake() }
            return true
        case .queueFull: return false
        case .failed(let error): throw error
        }
    }

    /// The topics this producer has produced to (each looked up once), for tests.
    var topicsProducedTo: Set<String> { topicLookups.seenTopics }
    /// New topics waiting for a look-up, and the look-ups made, for tests.
    var topicLookupCounts: (pending: Int, requests: Int) { topicLookups.counts }

    private enum EnqueueResult: Sendable {
        case queued, queueFull, failed(CourierError)
    }
}
