//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Foundation
import Logging
import Synchronization

/// One `rd_kafka_t`, its main queue, and the dedicated thread that alone polls that queue.
///
/// The poll thread serves every event on the client's event queue: logs (`log.queue=true` routes them there),
/// errors, and whatever else the owner asked for with `rd_kafka_conf_set_events` (the owner's `onEvent` sees those).
/// A producer's event queue is the main queue. A consumer's main queue is forwarded to its consumer queue, so it
/// gets a queue of its own for logs and passes a `poll` step (`rd_kafka_consumer_poll`) that the thread alternates
/// with draining that queue. It is a plain OS thread, not a task, because both polls block and the cooperative pool
/// has only as many threads as cores.
///
/// Lifetime: ``shutdown()`` stops the thread; the thread itself then runs the owner's `didStop`, marks the handle
/// dead, and destroys the queue and the handle, so the blocking `rd_kafka_destroy` never runs on the pool. Callers
/// reach the handle only through ``withLiveHandle(_:)``, which refuses once it is dead.
final class RDKafkaClient: @unchecked Sendable {
    // @unchecked: `handle` and `queue` are librdkafka objects, which are thread-safe; the `users` count guards
    // their lifetime and `stopRequested` is atomic. Nothing else is mutable.

    /// The raw `rd_kafka_t`. Valid until the poll thread has finished; prefer ``withLiveHandle(_:)``.
    let handle: OpaquePointer
    private let queue: OpaquePointer
    private let logger: Logger
    /// How many callers are using the handle now, plus ``closedFlag`` once it is being destroyed.
    ///
    /// An atomic count instead of a lock held around each use: with a lock, tasks producing on two threads at once
    /// queued for it around every `rd_kafka_produceva` (8 % of an emitting client's CPU in its slow path).
    private let users = Atomic<Int>(0)
    private static let closedFlag = 1 << 62
    private let stopRequested = Atomic(false)
    private let started = Atomic(false)
    private let finished = Completion()
    /// The client's fatal error, from an `RD_KAFKA_EVENT_ERROR` that says it is fatal.
    let fatal = FatalErrorWatch()

    /// Creates the handle. librdkafka starts its own broker threads here; the poll thread starts in
    /// ``start(name:onEvent:poll:didStop:)``.
    ///
    /// - Parameters:
    ///   - type: `RD_KAFKA_PRODUCER` or `RD_KAFKA_CONSUMER`.
    ///   - properties: librdkafka configuration properties. `log.queue` is forced to `true`.
    ///   - events: The `RD_KAFKA_EVENT_*` mask to enable on the main queue, or 0 for none (callback API).
    ///   - configure: Last changes to the raw `rd_kafka_conf_t` (callbacks, opaque) before the handle exists.
    ///   - eventsOnMainQueue: Whether logs go to the main queue (producers) or to a queue of their own (consumers,
    ///     whose main queue `rd_kafka_poll_set_consumer` forwards). Default: `true`.
    ///   - logger: Where librdkafka's logs and error events go.
    /// - Throws: ``CourierError/Code/unprocessable`` for a rejected property, or
    ///   ``CourierError/Code/transportUnavailable`` if `rd_kafka_new` fails.
    init(
        type: rd_kafka_type_t,
        properties: [String: String],
        events: Int32,
        configure: (OpaquePointer) -> Void = { _ in },
        eventsOnMainQueue: Bool = true,
        logger: Logger
    ) throws {
        var properties = properties
        // Logs arrive as RD_KAFKA_EVENT_LOG on the main queue, on our poll thread, instead of from librdkafka's
        // internal threads through a C callback.
        properties["log.queue"] = "true"
        let conf = try RDKafkaConfig.make(properties)
        if events != 0 { rd_kafka_conf_set_events(conf, events) }
        configure(conf)
        let (created, message) = RDKafkaConfig.withErrorBuffer { buffer, size in
            rd_kafka_new(type, conf, buffer, size)
        }
        guard let created else {
            // rd_kafka_new takes ownership of conf only when it succeeds.
            rd_kafka_conf_destroy(conf)
            throw CourierError(.transportUnavailable, "rd_kafka_new failed: \(message)")
        }
        let queue = eventsOnMainQueue ? rd_kafka_queue_get_main(created)! : rd_kafka_queue_new(created)!
        let err = rd_kafka_set_log_queue(created, queue)
        if err != RD_KAFKA_RESP_ERR_NO_ERROR {
            rd_kafka_queue_destroy(queue)
            rd_kafka_destroy(created)
            throw RDKafkaConfig.error(.transportUnavailable, "rd_kafka_set_log_queue", err)
        }
        self.handle = created
        self.queue = queue
        self.logger = logger
    }

    /// Starts the poll thread.
    ///
    /// - Parameters:
    ///   - name: The thread's Foundation name (`Thread.current.name`). The OS-level name is not set: that needs
    ///     `pthread_setname_np`, which Glibc's Swift module does not export, and a C shim is not worth it yet.
    ///   - onEvent: Runs on the poll thread for every event other than logs and errors. The event is destroyed
    ///     after it returns.
    ///   - poll: If given, the blocking step of the loop (it should return within about 100 ms); the event queue
    ///     is then drained without waiting after each step. If nil, the loop blocks on the event queue.
    ///   - didStop: Runs on the poll thread once polling has stopped, while the handle is still alive.
    ///   - beforeWait: If given (and `poll` is nil), runs on the poll thread before each wait on the event queue,
    ///     and again after ``wake()``; it may block briefly.
    func start(
        name: String,
        onEvent: @escaping @Sendable (OpaquePointer) -> Void = { _ in },
        poll: (@Sendable (OpaquePointer) -> Void)? = nil,
        beforeWait: (@Sendable (OpaquePointer) -> Void)? = nil,
        didStop: @escaping @Sendable () -> Void = {}
    ) {
        guard !started.exchange(true, ordering: .relaxed) else { return }
        let thread = Thread { [self] in
            pollLoop(onEvent: onEvent, poll: poll, beforeWait: beforeWait)
            didStop()
            closeToUsers()
            rd_kafka_queue_destroy(queue)
            rd_kafka_destroy(handle)
            finished.signal()
        }
        thread.name = name
        thread.start()
    }

    private func pollLoop(
        onEvent: (OpaquePointer) -> Void,
        poll: ((OpaquePointer) -> Void)?,
        beforeWait: ((OpaquePointer) -> Void)?
    ) {
        while !stopRequested.load(ordering: .acquiring) {
            if let poll {
                poll(handle)
                while !stopRequested.load(ordering: .relaxed), serveEvent(timeoutMilliseconds: 0, onEvent) {}
            } else {
                beforeWait?(handle)
                // The timeout bounds how long a stop can go unnoticed should a yield be missed.
                _ = serveEvent(timeoutMilliseconds: 100, onEvent)
            }
        }
    }

    /// Serves one event from the event queue; returns whether there was one.
    private func serveEvent(timeoutMilliseconds: Int32, _ onEvent: (OpaquePointer) -> Void) -> Bool {
        guard let event = rd_kafka_queue_poll(queue, timeoutMilliseconds) else { return false }
        switch rd_kafka_event_type(event) {
        case RD_KAFKA_EVENT_LOG: RDKafkaLog.logEvent(event, to: logger)
        case RD_KAFKA_EVENT_ERROR:
            RDKafkaLog.errorEvent(event, to: logger)
            if rd_kafka_event_error_is_fatal(event) != 0 { fatal.raise(from: handle) }
        default: onEvent(event)
        }
        rd_kafka_event_destroy(event)
        return true
    }

    /// Asks the poll thread to stop after its current step, without waiting.
    func requestStop() {
        stopRequested.store(true, ordering: .releasing)
    }

    /// Wakes the poll thread if it waits on the event queue, so it runs its `beforeWait` step now.
    func wake() {
        // As a user of the handle, because the poll thread may be destroying the queue right now.
        guard enter() else { return }
        defer { leave() }
        rd_kafka_queue_yield(queue)
    }

    /// Runs `body` with the handle if it has not been destroyed, which it cannot be until `body` returns.
    ///
    /// `body` should not block: the poll thread waits for it before destroying the handle, so a blocking call holds
    /// the close up (``KafkaAdmin/partitionCount(of:timeout:)`` does, for at most its timeout).
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` once the handle is gone, or what `body` throws.
    func withLiveHandle<T: Sendable>(_ body: (OpaquePointer) throws -> T) throws -> T {
        guard enter() else { throw CourierError.unavailable("the Kafka client is closed") }
        defer { leave() }
        return try body(handle)
    }

    /// Counts a user of the handle; `false` once it is being destroyed.
    private func enter() -> Bool {
        var current = users.load(ordering: .relaxed)
        while current & Self.closedFlag == 0 {
            let (exchanged, original) = users.compareExchange(
                expected: current, desired: current + 1, ordering: .acquiring
            )
            if exchanged { return true }
            current = original
        }
        return false
    }

    private func leave() {
        users.subtract(1, ordering: .releasing)
    }

    /// On the poll thread, before the handle is destroyed: refuses new users and waits for the current ones to
    /// leave (yielding at first, then sleeping a millisecond at a time, for a blocking metadata request).
    private func closeToUsers() {
        users.bitwiseOr(Self.closedFlag, ordering: .acquiringAndReleasing)
        var checks = 0
        while users.load(ordering: .acquiring) != Self.closedFlag {
            checks += 1
            if checks < 100 { sched_yield() } else { usleep(1_000) }
        }
    }

    /// Stops the poll thread, which then destroys the handle, and returns once it has. Idempotent.
    ///
    /// If the thread was never started, the handle is destroyed on a short-lived thread of its own.
    func shutdown() async {
        stopRequested.store(true, ordering: .releasing)
        if !started.load(ordering: .relaxed) { start(name: "rdkafka-close") }
        // Wakes a blocked rd_kafka_queue_poll so shutdown does not wait for its timeout.
        wake()
        await finished.wait()
    }

    /// Whether the handle is destroyed (or about to be, on the poll thread).
    var isClosed: Bool { users.load(ordering: .relaxed) & Self.closedFlag != 0 }
}
