//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Synchronization

/// One record a worker's partition lane took, from its dispatch until its offset may be stored: the handler's
/// outcome plus the delivery reports of the replies it produced.
///
/// Replies are enqueued without waiting for the broker, so the lane can start the next record's handler at once;
/// the lane's acknowledger then waits here, record after record in offset order, before it stores an offset.
final class KafkaPendingRecord: Sendable {
    let record: KafkaConsumerMessage
    /// Ends the waits for delivery reports once a stopping worker stops waiting.
    private let waitLimit: KafkaDeliveryWaitLimit

    /// Waiters are unsafe continuations (each taken out under the lock and resumed once): see `OneShot`.
    private struct State {
        var outcome: HandlingOutcome?
        var outstanding = 0
        var repliesWritten = 0
        var deliveryFailure: (any Error)?
        var settledWaiters: [UnsafeContinuation<Void, Never>] = []
        var finishedWaiters: [UnsafeContinuation<Void, Never>] = []
        /// The worker stopped waiting for this record's delivery reports (``giveUp()``).
        var gaveUp = false
    }

    private let state = Mutex(State())

    /// - Parameter waitLimit: What ends the waits for delivery reports when the worker stops (one per worker).
    init(_ record: KafkaConsumerMessage, waitLimit: KafkaDeliveryWaitLimit) {
        self.record = record
        self.waitLimit = waitLimit
    }

    /// Counts a reply its writer is about to enqueue; returns how many came before it.
    func countReply() -> Int {
        state.withLock { state in
            defer { state.repliesWritten += 1 }
            return state.repliesWritten
        }
    }

    /// A reply of this record is about to be enqueued; its report must come before the offset is stored.
    func expectDelivery() {
        state.withLock { $0.outstanding += 1 }
    }

    /// The reply announced by ``expectDelivery()`` was not enqueued after all (no report will come).
    func withdrawExpectedDelivery() {
        resume(state.withLock { state in
            state.outstanding -= 1
            return Self.takeReady(&state)
        })
    }

    /// A reply's delivery report arrived. Runs on the producer's poll thread.
    func delivered(_ result: Result<KafkaDeliveryReport, any Error>) {
        resume(state.withLock { state in
            state.outstanding -= 1
            if case .failure(let error) = result, state.deliveryFailure == nil { state.deliveryFailure = error }
            return Self.takeReady(&state)
        })
    }

    /// The handler finished (its replies are enqueued), with this outcome.
    func handled(_ outcome: HandlingOutcome) {
        resume(state.withLock { state in
            if state.outcome == nil { state.outcome = outcome }
            return Self.takeReady(&state)
        })
    }

    /// Waits until every reply enqueued so far is acknowledged; returns the first delivery failure, if any (or,
    /// when the worker stopped waiting first, why).
    func deliveriesSettled() async -> (any Error)? {
        // A request's only reply finds nothing outstanding: no suspension.
        let settled = state.withLock { state -> (any Error)?? in
            state.outstanding == 0 ? .some(state.deliveryFailure) : .none
        }
        if case .some(let failure) = settled { return failure }
        await waitLimit.waiting(on: self) {
            await withUnsafeContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.outstanding == 0 || state.gaveUp { return true }
                    state.settledWaiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
        return state.withLock { state in
            state.deliveryFailure ?? (state.outstanding == 0 ? nil : Self.stoppedWaiting)
        }
    }

    /// Waits until the handler finished and every reply it produced was acknowledged; returns the outcome to
    /// acknowledge the record by: ``HandlingOutcome/abandoned`` if a reply could not be delivered (its caller may not
    /// have the answer, so the record must come back).
    /// A stopping worker that stops waiting (``giveUp()``) gets ``HandlingOutcome/abandoned`` for a record not
    /// finished by then: its offset is not stored, so it comes back to the next worker.
    func finished() async -> HandlingOutcome {
        // Finished already (the usual case once the acknowledger has caught up): no registration with the limit,
        // whose lock every lane of the worker shares.
        if let outcome = finishedOutcome { return outcome }
        await waitLimit.waiting(on: self) {
            await withUnsafeContinuation { continuation in
                let now = state.withLock { state -> Bool in
                    if state.outcome != nil, state.outstanding == 0 { return true }
                    if state.gaveUp { return true }
                    state.finishedWaiters.append(continuation)
                    return false
                }
                if now { continuation.resume() }
            }
        }
        return finishedOutcome ?? .abandoned
    }

    /// The worker stops waiting for this record: every wait for it returns now, and later ones at once.
    func giveUp() {
        resume(state.withLock { state in
            state.gaveUp = true
            defer {
                state.settledWaiters = []
                state.finishedWaiters = []
            }
            return state.settledWaiters + state.finishedWaiters
        })
    }

    private static let stoppedWaiting = CourierError.unavailable(
        "the worker stopped before the broker acknowledged an earlier reply"
    )

    /// The outcome of a finished record whose reply failed to reach the broker: a reply the broker refused for what
    /// it is (too large for it, or its topic unknown or not allowed) would be refused again after redelivery, so
    /// the record counts as failed and is acknowledged; after any other failure (the broker unreachable) it is
    /// abandoned, and its lane handles it again before it stores any later offset.
    private static func outcome(after failure: any Error) -> HandlingOutcome {
        if let error = failure as? CourierError, error.rejectsTheMessageItself { return .failed(error) }
        return .abandoned
    }

    /// The first delivery failure of a reply of this record so far, without waiting for the others.
    var deliveryFailure: (any Error)? {
        state.withLock { $0.deliveryFailure }
    }

    /// The outcome ``finished()`` would return, if the record is finished now; `nil` if it is not yet.
    var finishedOutcome: HandlingOutcome? {
        state.withLock { state in
            guard let outcome = state.outcome, state.outstanding == 0 else { return nil }
            return state.deliveryFailure.map(Self.outcome(after:)) ?? outcome
        }
    }

    /// Removes and returns the waiters whose condition now holds.
    private static func takeReady(_ state: inout State) -> [UnsafeContinuation<Void, Never>] {
        guard state.outstanding == 0 else { return [] }
        var ready = state.settledWaiters
        state.settledWaiters = []
        if state.outcome != nil {
            ready += state.finishedWaiters
            state.finishedWaiters = []
        }
        return ready
    }

    private func resume(_ waiters: [UnsafeContinuation<Void, Never>]) {
        for waiter in waiters { waiter.resume() }
    }
}

/// Ends the waits for delivery reports of a stopping worker: once ``fire()`` runs, every record waited for now or
/// later gives up (``KafkaPendingRecord/giveUp()``). A reply the broker cannot take (its partition has no leader) is
/// retried by librdkafka until `message.timeout.ms` (5 minutes by default); without this, a worker would wait that
/// long past its graceful shutdown timeout.
final class KafkaDeliveryWaitLimit: Sendable {
    private struct State {
        var fired = false
        /// The records waited for now, with how many waits each.
        var waiting: [ObjectIdentifier: (record: KafkaPendingRecord, waits: Int)] = [:]
    }

    private let state = Mutex(State())

    /// Runs `wait`, a wait for `record`'s delivery reports, ending it through the record if the limit fires.
    func waiting(on record: KafkaPendingRecord, _ wait: () async -> Void) async {
        let key = ObjectIdentifier(record)
        let fired = state.withLock { state -> Bool in
            if state.fired { return true }
            state.waiting[key, default: (record, 0)].waits += 1
            return false
        }
        if fired { record.giveUp() }
        await wait()
        guard !fired else { return }
        state.withLock { state in
            guard let entry = state.waiting[key] else { return }
            if entry.waits == 1 { state.waiting[key] = nil } else { state.waiting[key]?.waits -= 1 }
        }
    }

    /// Gives up every record waited for now, and makes later waits give up at once. Idempotent.
    func fire() {
        let records = state.withLock { state in
            state.fired = true
            defer { state.waiting = [:] }
            return state.waiting.values.map(\.record)
        }
        for record in records { record.giveUp() }
    }
}

/// A flag a partition lane raises once the worker stopped before a record was finished: later offsets of the
/// partition must not be stored (that would skip the record), so the lane stops taking its records.
final class KafkaLaneStop: Sendable {
    private let raised = Atomic<Bool>(false)

    var isRaised: Bool { raised.load(ordering: .acquiring) }

    func raise() { raised.store(true, ordering: .releasing) }
}

/// How many records a partition lane handed to its acknowledger that are not acknowledged yet: while any are, a
/// later record must go through the acknowledger too, to keep offsets in order.
final class KafkaLaneBacklog: Sendable {
    private let count = Atomic<Int>(0)

    var isEmpty: Bool { count.load(ordering: .acquiring) == 0 }

    func added() { count.add(1, ordering: .relaxed) }

    func acknowledged() { count.subtract(1, ordering: .releasing) }
}
