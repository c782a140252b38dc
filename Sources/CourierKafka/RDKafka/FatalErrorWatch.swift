//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Synchronization

/// A librdkafka client's fatal error, once it has one, and who must hear of it.
///
/// After a fatal error (an idempotent producer's broken sequence, a consumer fenced by another with its
/// `group.instance.id`) the client can do nothing more: every produce fails and a consumer gets no more messages.
/// Logging it is not enough, as a worker would look alive while it does nothing; its owner stops instead.
final class FatalErrorWatch: Sendable {
    private struct State {
        var error: CourierError?
        var watchers: [@Sendable (CourierError) -> Void] = []
    }

    private let state = Mutex(State())

    /// The fatal error, once raised.
    var error: CourierError? { state.withLock { $0.error } }

    /// Records the client's fatal error (the first one counts) and tells the watchers.
    func raise(_ error: CourierError) {
        let watchers = state.withLock { state -> [@Sendable (CourierError) -> Void] in
            guard state.error == nil else { return [] }
            state.error = error
            defer { state.watchers = [] }
            return state.watchers
        }
        for watcher in watchers { watcher(error) }
    }

    /// Records the fatal error librdkafka holds for `handle`.
    func raise(from handle: OpaquePointer) {
        raise(Self.error(of: handle))
    }

    /// Runs `body` when the fatal error is raised, or now if it was.
    func onRaise(_ body: @escaping @Sendable (CourierError) -> Void) {
        let raised = state.withLock { state -> CourierError? in
            if state.error == nil { state.watchers.append(body) }
            return state.error
        }
        if let raised { body(raised) }
    }

    /// The fatal error librdkafka holds for `handle`, with its reason.
    static func error(of handle: OpaquePointer) -> CourierError {
        let (err, reason) = RDKafkaConfig.withErrorBuffer { buffer, size in rd_kafka_fatal_error(handle, buffer, size) }
        return RDKafkaConfig.error(.transportUnavailable, "the Kafka client hit a fatal error and can do nothing more",
                                   err, detail: reason)
    }
}
