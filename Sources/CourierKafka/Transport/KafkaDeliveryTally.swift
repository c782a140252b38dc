//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// Counts the delivery reports of a batch of messages and lets one task wait for them all: a batch of events with
/// acknowledgements waits once, not once per message.
final class KafkaDeliveryTally: Sendable {
    private struct State {
        var remaining: Int
        var firstError: (any Error)?
        var waiter: UnsafeContinuation<Void, any Error>?
    }

    private let state: Mutex<State>

    /// A tally expecting `count` reports.
    init(expecting count: Int) {
        state = Mutex(State(remaining: count))
    }

    /// Records one message's report; runs on the producer's poll thread (or as it closes), once per message.
    func report(_ result: Result<KafkaDeliveryReport, any Error>) {
        let done = state.withLock { state -> (UnsafeContinuation<Void, any Error>, (any Error)?)? in
            state.remaining -= 1
            if case .failure(let error) = result, state.firstError == nil { state.firstError = error }
            guard state.remaining == 0, let waiter = state.waiter else { return nil }
            state.waiter = nil
            return (waiter, state.firstError)
        }
        guard let (waiter, error) = done else { return }
        if let error { waiter.resume(throwing: error) } else { waiter.resume() }
    }

    /// Returns once every report arrived; throws the first failure among them.
    func wait() async throws {
        try await withUnsafeThrowingContinuation { (continuation: UnsafeContinuation<Void, any Error>) in
            let finished = state.withLock { state -> (any Error)?? in
                guard state.remaining == 0 else {
                    state.waiter = continuation
                    return nil
                }
                return .some(state.firstError)
            }
            guard let finished else { return }
            if let error = finished { continuation.resume(throwing: error) } else { continuation.resume() }
        }
    }
}
