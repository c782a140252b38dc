//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Logging
import Synchronization

/// What waits for one message's delivery report: a callback that runs on the poll thread (it must not block), or
/// when the producer closes first.
typealias DeliveryWaiter = @Sendable (Result<KafkaDeliveryReport, any Error>) -> Void

/// A producer's message ids and what waits for their delivery reports.
///
/// Kept apart from ``KafkaProducer`` so the poll thread's closures can hold it without holding the producer.
final class PendingDeliveries: Sendable {
    private struct State {
        var nextID: UInt64 = 1
        var accepting = true
        var waiting: [UInt64: DeliveryWaiter] = [:]
    }

    private let state = Mutex(State())

    /// Returns a fresh message id, registering `waiter` for its report if given.
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` once ``stopAccepting()`` has run.
    func reserveID(awaitedBy waiter: DeliveryWaiter? = nil) throws -> UInt64 {
        try state.withLock { state throws -> UInt64 in
            guard state.accepting else { throw CourierError.unavailable("the Kafka producer is closed") }
            let id = state.nextID
            state.nextID += 1
            if let waiter { state.waiting[id] = waiter }
            return id
        }
    }

    /// Forgets the waiter of `id` without resuming it (its message was never enqueued); returns `false` if it was no
    /// longer registered, because ``failAll(_:)`` has already resumed it (the producer closed meanwhile).
    @discardableResult
    func withdraw(_ id: UInt64) -> Bool {
        state.withLock { $0.waiting.removeValue(forKey: id) } != nil
    }

    /// Refuses new messages from now on. Returns whether this call was the one that stopped them.
    func stopAccepting() -> Bool {
        state.withLock { state in
            defer { state.accepting = false }
            return state.accepting
        }
    }

    /// Fails every waiting `send`; runs once the poll thread has stopped and no more reports can come.
    func failAll(_ error: any Error) {
        let waiting = state.withLock { state in
            defer { state.waiting = [:] }
            return state.waiting
        }
        for waiter in waiting.values { waiter(.failure(error)) }
    }

    /// The code of a failed delivery: whether the message itself was refused (sending it again cannot help) or
    /// the broker could not take it (`transportUnavailable`: timed out, unreachable).
    static func code(of err: rd_kafka_resp_err_t) -> CourierError.Code {
        switch err {
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
            .payloadTooLarge
        case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION, RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC,
            RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION,
            RD_KAFKA_RESP_ERR_INVALID_MSG, RD_KAFKA_RESP_ERR_INVALID_RECORD, RD_KAFKA_RESP_ERR__INVALID_ARG:
            .unprocessable
        default:
            .transportUnavailable
        }
    }

    /// Handles an `RD_KAFKA_EVENT_DR` batch: resumes the waiters it answers and logs failed `produce`s.
    func deliver(_ event: OpaquePointer, logger: Logger) {
        while let message = rd_kafka_event_message_next(event) {
            let id = UInt64(UInt(bitPattern: message.pointee._private))
            let waiter = state.withLock { $0.waiting.removeValue(forKey: id) }
            let topic = message.pointee.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
            let err = message.pointee.err
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                let report = KafkaDeliveryReport(
                    messageID: id,
                    topic: topic,
                    partition: message.pointee.partition,
                    offset: message.pointee.offset
                )
                waiter?(.success(report))
            } else {
                let error = RDKafkaConfig.error(Self.code(of: err), "delivering message \(id) to '\(topic)'", err)
                if let waiter {
                    waiter(.failure(error))
                } else {
                    logger.warning("\(error.message)")
                }
            }
        }
    }
}
