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

/// Everything a consumer's poll thread and rebalance callback need; passed to librdkafka as the conf opaque.
///
/// It cannot be the ``KafkaConsumer`` itself: the opaque is set on the configuration, before `rd_kafka_new`, so
/// before the consumer object exists. The poll thread's closures hold it strongly, so it outlives the handle.
///
/// ``KafkaAssignedConsumer`` shares it: its poll step and backpressure are the same (pausing and resuming work on
/// whatever `rd_kafka_assignment` returns, group-assigned or not); it never receives a rebalance callback and
/// assigns through ``assignManually(_:_:)`` instead.
final class ConsumerContext: Sendable {
    let backPressure: ConsumerBackPressure
    let source: ConsumerEventQueue
    /// The messages the current poll step took and has not yielded yet (only the poll thread touches it).
    private let batch = Mutex<[KafkaConsumerEvent]>([])
    let logger: Logger
    /// With a timeout, a revocation waits for ``RevocationGate/release()`` before unassigning.
    let revocation: (gate: RevocationGate, timeout: Duration)?

    /// How long the reader may stay behind before the assignment is paused (see ``pollStep(_:)``).
    let pauseDelay: Duration
    /// The consumer's fatal error (`RD_KAFKA_RESP_ERR__FATAL` from a poll), or its owner's (``fail(_:)``).
    let fatal = FatalErrorWatch()
    /// The partitions revoked, from the moment the rebalance callback announces their revocation until the reader
    /// has handled the `revoked` event (``KafkaConsumer/revocationSeen(_:)``): the reader may not reach that event
    /// (it can be waiting for room for a record taken before it), so work that would go on until its partition is
    /// revoked checks this too. Counted per partition: a revocation announced while the reader has not yet seen an
    /// earlier one of the same partition is not cleared with it.
    let revoking = Mutex<[KafkaTopicPartition: Int]>([:])

    /// Ends the events after those already buffered, for `error`: the consumer can do nothing more.
    func fail(_ error: CourierError) {
        fatal.raise(error)
        source.finish()
    }

    init(
        backPressure: ConsumerBackPressure,
        source: ConsumerEventQueue,
        logger: Logger,
        pauseDelay: Duration,
        revocationTimeout: Duration? = nil
    ) {
        self.backPressure = backPressure
        self.source = source
        self.logger = logger
        self.pauseDelay = pauseDelay
        self.revocation = revocationTimeout.map { (RevocationGate(), $0) }
    }

    /// The most messages one poll step hands to the reader at once.
    static let batchLimit = 64

    /// One step of the poll thread: match the assignment's paused state to demand, then poll up to 100 ms for a
    /// message, and take the ones already fetched behind it (up to ``batchLimit``) without waiting.
    ///
    /// Handing them over together takes the sequence's lock and wakes the reader once per batch, not per message.
    ///
    /// When the reader falls behind, the thread first stops polling for up to ``pauseDelay`` (checking every
    /// millisecond), and pauses the assignment only if the reader is still behind then. Pausing is expensive in
    /// librdkafka: it drops the partitions' prefetched messages, and after resuming, fetching restarted only after
    /// about a second (measured on the mock cluster: bursts of 10,000 records then a second idle, 11k records/s
    /// from a backlog the worker handles at over 100k/s). Not polling keeps the prefetched messages, bounded by
    /// librdkafka's `queued.max.messages.kbytes`; it only delays a rebalance callback by up to ``pauseDelay``.
    func pollStep(_ handle: OpaquePointer) {
        if waitsForReader(handle) {
            usleep(1_000)
            return
        }
        var timeout: Int32 = 100
        var taken = 0
        while taken < Self.batchLimit, let message = rd_kafka_consumer_poll(handle, timeout) {
            taken += 1
            defer { rd_kafka_message_destroy(message) }
            timeout = 0
            let err = message.pointee.err
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                if err == RD_KAFKA_RESP_ERR__FATAL, fatal.error == nil {
                    let error = FatalErrorWatch.error(of: handle)
                    logger.critical("\(error.message)")
                    fail(error)
                } else if err != RD_KAFKA_RESP_ERR__PARTITION_EOF {
                    let text = rd_kafka_message_errstr(message).map { String(cString: $0) } ?? ""
                    logger.warning(
                        "Kafka consumer error: \(text)",
                        metadata: [
                            "rdkafka.error": "\(String(cString: rd_kafka_err2str(err)))",
                            "rdkafka.code": "\(err.rawValue)",
                        ]
                    )
                }
                continue
            }
            let copy = Self.copy(message)
            batch.withLock { $0.append(.message(copy)) }
        }
        let messages = batch.withLock { batch in
            defer { batch.removeAll(keepingCapacity: true) }
            return batch
        }
        if !messages.isEmpty { emit(contentsOf: messages) }
    }

    /// Yields an event after the messages the current poll step took, recording a stop unless `produceMore()` ran
    /// meanwhile; returns whether it was yielded.
    ///
    /// The rebalance callback runs inside `rd_kafka_consumer_poll`, in the middle of a poll step: its event must
    /// still come after the messages polled before it (a revocation after every message of its partitions).
    @discardableResult
    func emit(_ event: KafkaConsumerEvent) -> Bool {
        let events = batch.withLock { batch in
            defer { batch.removeAll(keepingCapacity: true) }
            return batch + [event]
        }
        return emit(contentsOf: events)
    }

    /// Yields events in order, recording a stop unless `produceMore()` ran meanwhile; returns whether they were
    /// yielded.
    @discardableResult
    private func emit(contentsOf events: [KafkaConsumerEvent]) -> Bool {
        let epoch = backPressure.state.withLock { $0.epoch }
        switch source.yield(contentsOf: events) {
        case .stopProducing:
            backPressure.state.withLock { state in
                if state.epoch == epoch { state.demand = false }
            }
            return true
        case .produceMore:
            return true
        case .dropped:
            // The sequence has finished or its reader has gone; close() will stop the thread.
            return false
        }
    }

    /// Matches the assignment's paused state to demand; returns `true` when the reader has been behind for less
    /// than ``pauseDelay``, so the thread should wait instead of polling.
    private func waitsForReader(_ handle: OpaquePointer) -> Bool {
        let (demand, paused, behindSince) = backPressure.state.withLock { ($0.demand, $0.paused, $0.behindSince) }
        if !demand, !paused {
            let now = ContinuousClock.now
            if behindSince == nil { backPressure.state.withLock { $0.behindSince = now } }
            if (behindSince ?? now).duration(to: now) < pauseDelay { return true }
        } else if demand, behindSince != nil {
            backPressure.state.withLock { $0.behindSince = nil }
        }
        applyDemand(handle, demand: demand, paused: paused)
        return false
    }

    private func applyDemand(_ handle: OpaquePointer, demand: Bool, paused: Bool) {
        guard demand == paused else { return }
        var assignment: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        guard rd_kafka_assignment(handle, &assignment) == RD_KAFKA_RESP_ERR_NO_ERROR, let assignment else { return }
        defer { rd_kafka_topic_partition_list_destroy(assignment) }
        if demand {
            rd_kafka_resume_partitions(handle, assignment)
        } else {
            rd_kafka_pause_partitions(handle, assignment)
        }
        backPressure.state.withLock { state in
            state.paused = !demand
            if !demand { state.pauses += 1 }
        }
    }

    /// Assigns `partitions` explicitly, without a group, at the offsets set in the list; on the poll thread.
    ///
    /// For ``KafkaAssignedConsumer``. Like a group assignment, new partitions start paused while the reader is
    /// behind: the poll step only pauses or resumes when demand changes, so it would not catch them.
    func assignManually(
        _ handle: OpaquePointer,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>
    ) -> rd_kafka_resp_err_t {
        let err = rd_kafka_assign(handle, partitions)
        if err == RD_KAFKA_RESP_ERR_NO_ERROR, backPressure.state.withLock({ $0.paused }) {
            rd_kafka_pause_partitions(handle, partitions)
        }
        return err
    }

    /// Runs on the poll thread, inside `rd_kafka_consumer_poll` or `rd_kafka_consumer_close`.
    func rebalance(
        _ handle: OpaquePointer,
        _ err: rd_kafka_resp_err_t,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
    ) {
        let cooperative = rd_kafka_rebalance_protocol(handle).map { String(cString: $0) } == "COOPERATIVE"
        let list = Self.topicPartitions(partitions)
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                check(rd_kafka_incremental_assign(handle, partitions), "incremental assign")
            } else {
                let result = rd_kafka_assign(handle, partitions)
                if result != RD_KAFKA_RESP_ERR_NO_ERROR { log(result, "assign") }
            }
            // While the reader is behind, new partitions start paused too.
            if backPressure.state.withLock({ $0.paused }), let partitions {
                rd_kafka_pause_partitions(handle, partitions)
            }
            emit(.assigned(list))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            revoking.withLock { revoking in for partition in list { revoking[partition, default: 0] += 1 } }
            // Emitted before unassigning so the reader sees it after every message of these partitions.
            if let (gate, timeout) = revocation {
                let revocation = gate.arm()
                if emit(.revoked(list, revocation: revocation)) {
                    if !gate.wait(timeout: timeout) {
                        logger.warning(
                            "revoking partitions without waiting longer for their records to finish",
                            metadata: ["partitions": "\(list)", "timeout": "\(timeout)"]
                        )
                    }
                    // Synchronously, so the next owner's offset fetch sees it: librdkafka's own commit on unassign
                    // is asynchronous and races the rejoin. Kafka accepts commits while a rebalance is being
                    // prepared; librdkafka's mock cluster refuses them (REBALANCE_IN_PROGRESS).
                    let committed = rd_kafka_commit(handle, nil, 0)
                    if committed != RD_KAFKA_RESP_ERR_NO_ERROR, committed != RD_KAFKA_RESP_ERR__NO_OFFSET {
                        logger.warning(
                            "could not commit before giving partitions up; their next owner may handle some records again",
                            metadata: ["rdkafka.error": "\(String(cString: rd_kafka_err2str(committed)))",
                                       "partitions": "\(list)"]
                        )
                    }
                } else {
                    gate.disarm()
                }
            } else {
                emit(.revoked(list))
            }
            if cooperative {
                check(rd_kafka_incremental_unassign(handle, partitions), "incremental unassign")
            } else {
                rd_kafka_assign(handle, nil)
            }
        default:
            log(err, "rebalance")
            rd_kafka_assign(handle, nil)
        }
    }

    private func check(_ error: OpaquePointer?, _ operation: String) {
        guard let error else { return }
        defer { rd_kafka_error_destroy(error) }
        log(rd_kafka_error_code(error), operation)
    }

    private func log(_ err: rd_kafka_resp_err_t, _ operation: String) {
        logger.error("Kafka consumer \(operation) failed: \(String(cString: rd_kafka_err2str(err))) (\(err.rawValue))")
    }

    static func topicPartitions(
        _ list: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
    ) -> [KafkaTopicPartition] {
        guard let list, let elements = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            KafkaTopicPartition(topic: String(cString: elements[index].topic), partition: elements[index].partition)
        }
    }

    /// Copies a message out of librdkafka's memory.
    static func copy(_ message: UnsafeMutablePointer<rd_kafka_message_t>) -> KafkaConsumerMessage {
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ count: Int) -> [UInt8]? {
            guard let pointer else { return nil }
            return Array(UnsafeRawBufferPointer(start: pointer, count: count))
        }
        var headers: [KafkaConsumerMessage.Header] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(
                    .init(
                        name: name.map { String(cString: $0) } ?? "",
                        value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                    )
                )
                index += 1
            }
        }
        return KafkaConsumerMessage(
            topic: message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? "",
            partition: message.pointee.partition,
            offset: message.pointee.offset,
            key: bytes(message.pointee.key, message.pointee.key_len),
            value: bytes(message.pointee.payload, message.pointee.len),
            headers: headers
        )
    }
}

/// The C rebalance callback: no captures are possible, so the context comes back through the conf opaque.
let consumerRebalanceCallback:
    @convention(c) (
        OpaquePointer?, rd_kafka_resp_err_t, UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        UnsafeMutableRawPointer?
    ) -> Void = { handle, err, partitions, opaque in
        guard let handle, let opaque else { return }
        Unmanaged<ConsumerContext>.fromOpaque(opaque).takeUnretainedValue().rebalance(handle, err, partitions)
    }
