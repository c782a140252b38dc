//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import CourierKafka
import Foundation
import Synchronization

/// The Kafka settings Courier and the raw baseline share in the bench, so both run under the same fetch and batching
/// settings. Courier gets them as `kafka://` URL query properties.
enum BenchKafkaSettings {
    /// - `fetch.wait.max.ms=5`: the mock cluster (and tansu) hold a fetch for the full wait when it finds no data,
    ///   so this sets the latency of each hop.
    /// - `linger.ms=1`: batches what is produced within 1 ms. With 0 every record becomes a message set of its own,
    ///   and the mock cluster scans its partitions' message-set lists linearly on every fetch (its source says
    ///   "FIXME: Maintain an index"), so under load it spends its CPU there.
    /// - `session.timeout.ms=6000`, `heartbeat.interval.ms=1000`: quick group joins on the mock cluster.
    static let properties: [String: String] = [
        "fetch.wait.max.ms": "5",
        "linger.ms": "1",
        "session.timeout.ms": "6000",
        "heartbeat.interval.ms": "1000",
        "socket.nagle.disable": "true",
    ]
}

/// Topic names of the raw Kafka baseline.
enum RawKafka {
    static let request = "raw.request"
    static let reply = "raw.reply"
    static let event = "raw.event"
    static let payload: [UInt8] = Array("[1,2,3]".utf8)

    /// `properties` without the ones librdkafka applies to the other kind of client (they would log CONFWARN).
    static func settings(_ properties: [String: String], consumer: Bool) -> [String: String] {
        let producerOnly: Set<String> = ["linger.ms", "queue.buffering.max.ms", "batch.num.messages", "acks"]
        let consumerOnly: Set<String> = ["session.timeout.ms", "heartbeat.interval.ms", "auto.offset.reset"]
        return properties.filter { key, _ in
            consumer ? !producerOnly.contains(key) : !(consumerOnly.contains(key) || key.hasPrefix("fetch."))
        }
    }
}

// MARK: - librdkafka handles

/// A raw `rd_kafka_t` pointer that crosses threads; librdkafka handles are thread-safe.
private struct RawHandle: @unchecked Sendable {
    let pointer: OpaquePointer
}

/// One librdkafka consumer or producer with a dedicated poll thread (blocking polls never run on the cooperative
/// pool). A consumer joins a group of its own and is assigned its topics' partitions at their high watermarks, so
/// nothing produced after ``waitUntilAssigned()`` is missed and nothing older is read.
private final class RawClient: Sendable {
    let handle: RawHandle
    /// Raised once a consumer's group has assigned it partitions.
    let assigned: RawSignal
    private let stopping: RawSignal
    private let stopped: RawSignal

    /// Creates a producer (`topics` empty) or a group consumer of `topics`; `onMessage` runs on the poll thread.
    init(
        bootstrapServers: String,
        properties: [String: String],
        topics: [String],
        onMessage: @escaping @Sendable (UnsafeMutablePointer<rd_kafka_message_t>) -> Void = { _ in }
    ) throws {
        let isConsumer = !topics.isEmpty
        let (assigned, stopping, stopped) = (RawSignal(), RawSignal(), RawSignal())
        var properties = RawKafka.settings(properties, consumer: isConsumer)
        properties["bootstrap.servers"] = bootstrapServers
        if isConsumer {
            properties["group.id"] = "courier-raw-\(UInt32.random(in: 0...UInt32.max))"
            properties["enable.auto.commit"] = "false"
        }
        guard let conf = rd_kafka_conf_new() else { throw CourierError(.unprocessable, "rd_kafka_conf_new failed") }
        var error = [CChar](repeating: 0, count: 512)
        for (key, value) in properties where rd_kafka_conf_set(conf, key, value, &error, error.count) != RD_KAFKA_CONF_OK {
            rd_kafka_conf_destroy(conf)
            throw CourierError(.unprocessable, "raw Kafka property \(key): \(errorText(error))")
        }
        if isConsumer {
            rd_kafka_conf_set_rebalance_cb(conf, rawRebalance)
            // Unretained: the client stores the signal and outlives the handle (close() waits for its destruction).
            rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(assigned).toOpaque())
        }
        guard let created = rd_kafka_new(isConsumer ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, conf, &error, error.count)
        else {
            rd_kafka_conf_destroy(conf)
            throw CourierError(.transportUnavailable, "rd_kafka_new: \(errorText(error))")
        }
        let handle = RawHandle(pointer: created)
        if isConsumer {
            rd_kafka_poll_set_consumer(created)
            let list = rd_kafka_topic_partition_list_new(Int32(topics.count))!
            defer { rd_kafka_topic_partition_list_destroy(list) }
            for topic in topics { rd_kafka_topic_partition_list_add(list, topic, -1) }
            let err = rd_kafka_subscribe(created, list)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                rd_kafka_destroy(created)
                throw CourierError(.transportUnavailable, "subscribing to \(topics): \(String(cString: rd_kafka_err2str(err)))")
            }
        }
        let thread = Thread {
            while !stopping.isSignalled {
                if isConsumer {
                    guard let message = rd_kafka_consumer_poll(handle.pointer, 100) else { continue }
                    if message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR { onMessage(message) }
                    rd_kafka_message_destroy(message)
                } else {
                    rd_kafka_poll(handle.pointer, 100)  // delivery reports (unused) and errors
                }
            }
            if isConsumer {
                rd_kafka_consumer_close(handle.pointer)
            } else {
                rd_kafka_flush(handle.pointer, 5_000)
            }
            rd_kafka_destroy(handle.pointer)
            stopped.signal()
        }
        thread.name = isConsumer ? "raw-consumer" : "raw-producer"
        self.handle = handle
        self.assigned = assigned
        self.stopping = stopping
        self.stopped = stopped
        thread.start()
    }

    /// Fetches `topics`' metadata, on a thread of its own (it blocks), and returns once it has.
    ///
    /// librdkafka can hold the first messages to a topic it has no metadata for until its once-a-second scan of
    /// unknown topics (confluentinc/librdkafka#3202). Without this, the raw event step sometimes waited most of a
    /// second for it (88-90k events/s, against 377-681k when it did not). Looking the topics up first is what
    /// librdkafka's maintainers advise an application to do, and what Courier's producer does on its first message.
    func lookUp(topics: [String]) async {
        let handle = self.handle
        let done = RawSignal()
        let thread = Thread {
            for topic in topics {
                guard let topicHandle = rd_kafka_topic_new(handle.pointer, topic, nil) else { continue }
                var metadata: UnsafePointer<rd_kafka_metadata>?
                _ = rd_kafka_metadata(handle.pointer, 0, topicHandle, &metadata, 10_000)
                if let metadata { rd_kafka_metadata_destroy(metadata) }
                rd_kafka_topic_destroy(topicHandle)
            }
            done.signal()
        }
        thread.start()
        await done.wait()
    }

    /// Enqueues a record (copied; never blocks). Returns false when librdkafka's queue is full.
    func produce(topic: String, key: UnsafeRawBufferPointer?, value: [UInt8], headers: OpaquePointer? = nil) throws -> Bool {
        let err: rd_kafka_resp_err_t = topic.withCString { name in
            value.withUnsafeBytes { value in
                var values = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: headers == nil ? 4 : 5)
                values[0].vtype = RD_KAFKA_VTYPE_TOPIC
                values[0].u.cstr = name
                values[1].vtype = RD_KAFKA_VTYPE_VALUE
                values[1].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                values[1].u.mem.size = value.count
                values[2].vtype = RD_KAFKA_VTYPE_KEY
                values[2].u.mem.ptr = key.flatMap { UnsafeMutableRawPointer(mutating: $0.baseAddress) }
                values[2].u.mem.size = key?.count ?? 0
                values[3].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                values[3].u.i = RD_KAFKA_MSG_F_COPY
                if let headers {
                    // Ownership of the headers passes to librdkafka when the call succeeds.
                    values[4].vtype = RD_KAFKA_VTYPE_HEADERS
                    values[4].u.headers = headers
                }
                guard let error = rd_kafka_produceva(handle.pointer, values, values.count) else {
                    return RD_KAFKA_RESP_ERR_NO_ERROR
                }
                defer { rd_kafka_error_destroy(error) }
                return rd_kafka_error_code(error)
            }
        }
        if err == RD_KAFKA_RESP_ERR__QUEUE_FULL { return false }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw CourierError(.transportUnavailable, "producing to \(topic): \(String(cString: rd_kafka_err2str(err)))")
        }
        return true
    }

    /// Stops the poll thread, which closes and destroys the handle; returns once it has.
    func close() async {
        stopping.signal()
        await stopped.wait()
    }
}

/// The text in a C error buffer.
private func errorText(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Assigns the group's partitions at their high watermarks (explicit offsets: no asynchronous "latest" lookup that
/// could land after the first record), then signals the client's `assigned`.
private let rawRebalance: @convention(c) (
    OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?, UnsafeMutableRawPointer?
) -> Void = { handle, err, partitions, opaque in
    guard let handle else { return }
    guard err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS, let partitions else {
        rd_kafka_assign(handle, nil)
        return
    }
    for index in 0..<Int(partitions.pointee.cnt) {
        let element = partitions.pointee.elems.advanced(by: index)
        var low: Int64 = 0
        var high: Int64 = 0
        // On the poll thread: this blocks only it.
        if rd_kafka_query_watermark_offsets(handle, element.pointee.topic, element.pointee.partition, &low, &high, 10_000)
            == RD_KAFKA_RESP_ERR_NO_ERROR
        {
            element.pointee.offset = high
        }
    }
    rd_kafka_assign(handle, partitions)
    if let opaque { Unmanaged<RawSignal>.fromOpaque(opaque).takeUnretainedValue().signal() }
}

/// The raw baseline's thread-to-task signals: CourierKafka's own (poll threads signal, tasks await).
typealias RawSignal = Completion

extension Completion {
    var isSignalled: Bool { isDone }

    /// Waits at most `timeout`; returns whether the signal came.
    func wait(timeout: Duration) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.wait()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            if !first { signal() }  // releases the waiting child so the group can finish
            return first
        }
    }
}

// MARK: - The echo server

/// The raw echo worker `courier bench-raw-server` runs.
enum RawKafkaEchoServer {
    /// Consumes `raw.request` and produces each record's value back to `raw.reply` with the same key and headers,
    /// from the consumer's poll thread, until the task is cancelled. Calls `ready()` once its consumer group has
    /// assigned it partitions.
    static func serve(
        bootstrapServers: String,
        properties: [String: String],
        ready: @escaping @Sendable () -> Void
    ) async throws {
        let producer = try RawClient(bootstrapServers: bootstrapServers, properties: properties, topics: [])
        await producer.lookUp(topics: [RawKafka.reply])
        let consumer: RawClient
        do {
            consumer = try RawClient(bootstrapServers: bootstrapServers, properties: properties,
                                     topics: [RawKafka.request]) { message in
                let value = message.pointee.payload.map {
                    Array(UnsafeRawBufferPointer(start: $0, count: message.pointee.len))
                } ?? []
                let key = message.pointee.key.map { UnsafeRawBufferPointer(start: $0, count: message.pointee.key_len) }
                var headers: OpaquePointer?
                var copy: OpaquePointer?
                if rd_kafka_message_headers(message, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR, let headers {
                    copy = rd_kafka_headers_copy(headers)
                }
                // A full queue: let the producer's thread deliver, then try again.
                while (try? producer.produce(topic: RawKafka.reply, key: key, value: value, headers: copy)) == false {
                    usleep(200)
                }
            }
        } catch {
            await producer.close()
            throw error
        }
        await consumer.assigned.wait()
        ready()
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(3600))
        }
        await consumer.close()
        await producer.close()
    }
}

// MARK: - The client

/// The raw baseline: librdkafka's C API directly, no Courier. A request is a record on `raw.request` whose key is an
/// 8-byte correlation id; the echo server produces it back to `raw.reply`, and the client's consumer thread matches
/// the reply and, in the same breath, produces the next request (a closed loop with `inFlight` outstanding, as an
/// application on librdkafka alone would write it). Events go to `raw.event` and are counted by the same consumer.
final class RawKafkaSubject: BenchSubject {
    private let producer: RawClient
    private let consumer: RawClient
    private let state: RawKafkaState

    private init(producer: RawClient, consumer: RawClient, state: RawKafkaState) {
        self.producer = producer
        self.consumer = consumer
        self.state = state
    }

    /// Connects a producer and a consumer of `raw.reply` and `raw.event` (its group assigned) to the cluster.
    static func connect(bootstrapServers: String, properties: [String: String]) async throws -> RawKafkaSubject {
        let producer = try RawClient(bootstrapServers: bootstrapServers, properties: properties, topics: [])
        await producer.lookUp(topics: [RawKafka.request, RawKafka.event])
        let state = RawKafkaState(producer: producer)
        let consumer: RawClient
        do {
            consumer = try RawClient(bootstrapServers: bootstrapServers, properties: properties,
                                     topics: [RawKafka.reply, RawKafka.event]) { message in
                state.received(message)
            }
        } catch {
            await producer.close()
            throw error
        }
        guard await consumer.assigned.wait(timeout: .seconds(60)) else {
            await consumer.close()
            await producer.close()
            throw CourierError(.timedOut, "the raw Kafka consumer was not assigned partitions within 60 s")
        }
        return RawKafkaSubject(producer: producer, consumer: consumer, state: state)
    }

    func roundTrips(
        inFlight: Int,
        until deadline: ContinuousClock.Instant,
        counter: BenchCounter,
        latencies: LatencyRecorder?
    ) async throws {
        let run = RawKafkaState.Run(deadline: deadline, counter: counter, latencies: latencies)
        state.begin(run)
        defer { state.end() }
        for _ in 0..<inFlight { try state.sendRequest(in: run) }
        // Replies lost (no echo server) would hang the run: give up 10 s after the deadline.
        guard await run.finished.wait(timeout: ContinuousClock.now.duration(to: deadline) + .seconds(10)) else {
            throw CourierError(.timedOut, "raw Kafka round trips: replies missing 10 s after the deadline")
        }
        if let failure = run.failure { throw failure }
    }

    func events(count: Int, counter: BenchCounter) async throws {
        let target = state.expectEvents(count, counter: counter)
        let producer = self.producer
        // The produce loop (it may wait for a full queue) runs on a thread of its own, not on the pool.
        let produced = RawSignal()
        let failure = Mutex<(any Error)?>(nil)
        let thread = Thread {
            do {
                for _ in 0..<count {
                    while try !producer.produce(topic: RawKafka.event, key: nil, value: RawKafka.payload) { usleep(200) }
                }
            } catch {
                failure.withLock { $0 = error }
            }
            produced.signal()
        }
        thread.start()
        await produced.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        guard await target.wait(timeout: .seconds(120)) else {
            throw CourierError(.timedOut, "raw Kafka events: not all \(count) consumed within 120 s")
        }
    }

    func shutdown() async {
        await consumer.close()
        await producer.close()
    }
}

/// What the client's consumer thread shares with the async side: the running round-trip loop and the event count.
private final class RawKafkaState: Sendable {
    /// One `roundTrips` call.
    final class Run: Sendable {
        let deadline: ContinuousClock.Instant
        let counter: BenchCounter
        let latencies: LatencyRecorder?
        let finished = RawSignal()
        /// Start times of outstanding requests by correlation id.
        let outstanding = Mutex<[UInt64: ContinuousClock.Instant]>([:])
        let failureBox = Mutex<(any Error)?>(nil)

        init(deadline: ContinuousClock.Instant, counter: BenchCounter, latencies: LatencyRecorder?) {
            self.deadline = deadline
            self.counter = counter
            self.latencies = latencies
        }

        var failure: (any Error)? { failureBox.withLock { $0 } }
    }

    private struct Events {
        var consumed = 0
        var target = Int.max
        var counter: BenchCounter?
        var reached: RawSignal?
    }

    private let producer: RawClient
    private let run = Mutex<Run?>(nil)
    private let events = Mutex(Events())
    /// Correlation ids start at a random base so replies left over from another client never match.
    private let nextID = Atomic<UInt64>(UInt64.random(in: 0...(UInt64.max / 2)))

    init(producer: RawClient) {
        self.producer = producer
    }

    func begin(_ run: Run) { self.run.withLock { $0 = run } }
    func end() { run.withLock { $0 = nil } }

    /// Produces one request of `run`, registering its start time first (the reply can come back at once).
    func sendRequest(in run: Run) throws {
        let id = nextID.add(1, ordering: .relaxed).newValue
        run.outstanding.withLock { $0[id] = ContinuousClock.now }
        try withUnsafeBytes(of: id.littleEndian) { key in
            while try !producer.produce(topic: RawKafka.request, key: key, value: RawKafka.payload) { usleep(200) }
        }
    }

    /// Returns a signal raised once `count` more events were consumed; they are added to `counter` as they come.
    func expectEvents(_ count: Int, counter: BenchCounter) -> RawSignal {
        let reached = RawSignal()
        events.withLock { events in
            events.target = events.consumed + count
            events.counter = counter
            events.reached = reached
        }
        return reached
    }

    /// Runs on the consumer's poll thread for every record.
    func received(_ message: UnsafeMutablePointer<rd_kafka_message_t>) {
        let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        if topic == RawKafka.event {
            let (counter, reached) = events.withLock { events -> (BenchCounter?, RawSignal?) in
                events.consumed += 1
                return (events.counter, events.consumed >= events.target ? events.reached : nil)
            }
            counter?.add()
            reached?.signal()
            return
        }
        guard message.pointee.key_len == 8, let key = message.pointee.key,
            let run = run.withLock({ $0 })
        else { return }
        let id = UInt64(littleEndian: key.loadUnaligned(as: UInt64.self))
        guard let start = run.outstanding.withLock({ $0.removeValue(forKey: id) }) else { return }
        let now = ContinuousClock.now
        run.latencies?.record(start.duration(to: now))
        run.counter.add()
        if now < run.deadline {
            do {
                try sendRequest(in: run)
                return
            } catch {
                run.failureBox.withLock { $0 = $0 ?? error }
            }
        }
        if run.outstanding.withLock({ $0.isEmpty }) { run.finished.signal() }
    }
}
