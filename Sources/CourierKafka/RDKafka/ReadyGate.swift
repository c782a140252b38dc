//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Synchronization

/// Hands one-shot setup work from tasks to a poll thread and lets any number of tasks await its outcome.
///
/// ``KafkaAssignedConsumer/ready()`` uses it: the watermark queries block, and the poll thread is the one place
/// where blocking is allowed and where the handle is guaranteed alive (it alone destroys it). Tasks ``wait()``;
/// the poll thread asks ``takeRequest()`` before each poll step, does the work, and reports it with
/// ``finish(_:)``. Success is remembered; a failure resets the gate so a later `wait()` tries again (for example
/// once a missing topic has been created).
final class ReadyGate: Sendable {
    private typealias Waiter = CheckedContinuation<Void, any Error>

    private enum State {
        /// Nobody has asked yet, or the last attempt failed.
        case idle
        /// Asked for; the poll thread has not picked it up.
        case requested([Waiter])
        /// The poll thread is doing the work.
        case running([Waiter])
        case ready
        /// The poll thread has stopped: nobody would ever do the work.
        case closed
    }

    private let state = Mutex(State.idle)

    /// Returns once the work has succeeded, asking for it if nobody has yet.
    ///
    /// - Throws: The work's error, or ``CourierError/Code/transportUnavailable`` once the gate is closed.
    func wait() async throws {
        try await withCheckedThrowingContinuation { (waiter: Waiter) in
            // The continuation is resumed outside the lock: resuming runs no code here, but keeps the rule simple.
            let outcome = state.withLock { state -> Result<Void, any Error>? in
                switch state {
                case .idle:
                    state = .requested([waiter])
                case .requested(let waiters):
                    state = .requested(waiters + [waiter])
                case .running(let waiters):
                    state = .running(waiters + [waiter])
                case .ready:
                    return .success(())
                case .closed:
                    return .failure(CourierError.unavailable("the Kafka consumer is closed"))
                }
                return nil
            }
            if let outcome { waiter.resume(with: outcome) }
        }
    }

    /// On the poll thread: whether work was asked for. If so it is now running and the caller must ``finish(_:)``.
    func takeRequest() -> Bool {
        state.withLock { state in
            guard case .requested(let waiters) = state else { return false }
            state = .running(waiters)
            return true
        }
    }

    /// On the poll thread: reports the running work's outcome to everyone waiting.
    func finish(_ result: Result<Void, CourierError>) {
        let waiters = state.withLock { state -> [Waiter] in
            guard case .running(let waiters) = state else { return [] }
            state = (try? result.get()) != nil ? .ready : .idle
            return waiters
        }
        for waiter in waiters { waiter.resume(with: result.mapError { $0 }) }
    }

    /// On the poll thread, once it has stopped: fails every waiter, now and later. Idempotent.
    func close() {
        let waiters = state.withLock { state -> [Waiter] in
            defer { state = .closed }
            switch state {
            case .requested(let waiters), .running(let waiters): return waiters
            case .idle, .ready, .closed: return []
            }
        }
        for waiter in waiters { waiter.resume(throwing: CourierError.unavailable("the Kafka consumer is closed")) }
    }
}
