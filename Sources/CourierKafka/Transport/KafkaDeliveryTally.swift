//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// Counts the delivery reports of a batch of messages and lets one task wait for them all: a batch of events with
/// acknowledgements waits once, not once per message.
final class KafkaDeliveryTally: Sendable {
    /// The messages whose delivery failed: their indices in the batch, and why.
    typealias Failures = [(index: Int, error: any Error)]

    private struct State {
        var remaining: Int
        var failures: Failures = []
        var waiter: UnsafeContinuation<Failures, Never>?
    }

    private let count: Int
    private let state: Mutex<State>

    /// A tally expecting `count` reports, one for each message of the batch (indices `0..<count`).
    init(expecting count: Int) {
        self.count = count
        state = Mutex(State(remaining: count))
    }

    /// Records the report of the message at `index`; runs on the producer's poll thread (or as it closes), once
    /// per message.
    func report(_ index: Int, _ result: Result<KafkaDeliveryReport, any Error>) {
        let done = state.withLock { state -> (UnsafeContinuation<Failures, Never>, Failures)? in
            state.remaining -= 1
            if case .failure(let error) = result { state.failures.append((index, error)) }
            guard state.remaining == 0, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return (waiter, state.failures)
        }
        guard let (waiter, failures) = done else { return }
        waiter.resume(returning: failures)
    }

    /// Only the first `produced` messages were handed to librdkafka (the next one was refused): expects no report
    /// for the others. Call it before ``wait()``.
    func expectOnly(_ produced: Int) {
        state.withLock { $0.remaining -= count - produced }
    }

    /// Returns once every expected report arrived, with the failed messages in index order.
    func wait() async -> Failures {
        let failures = await withUnsafeContinuation { (continuation: UnsafeContinuation<Failures, Never>) in
            let finished = state.withLock { state -> Failures? in
                guard state.remaining == 0 else {
                    state.waiter = continuation
                    return nil
                }
                return state.failures
            }
            if let finished { continuation.resume(returning: finished) }
        }
        // Reports arrive in any order.
        return failures.sorted { $0.index < $1.index }
    }
}
