//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// The backpressure state a consumer's event sequence and its poll thread share.
///
/// The sequence's delegate records demand; the poll thread pauses or resumes the assignment to match before each
/// poll, and keeps polling either way (group heartbeats and `max.poll.interval.ms` depend on it). The epoch
/// counter closes a race: `produceMore()` can run between the poll thread's `yield` returning `.stopProducing`
/// and the thread recording that, and must then win.
final class ConsumerBackPressure: Sendable {
    struct State {
        /// Whether the sequence wants more events.
        var demand = true
        /// Bumped by every `produceMore()`.
        var epoch: UInt64 = 0
        /// Whether the poll thread has paused the assignment (only the poll thread changes this).
        var paused = false
        /// How many times the poll thread paused the assignment (for tests and metrics).
        var pauses = 0
        /// Since when the reader has been behind while the assignment is not paused (only the poll thread changes
        /// this).
        var behindSince: ContinuousClock.Instant?
    }

    let state = Mutex(State())

    func produceMore() {
        state.withLock { state in
            state.demand = true
            state.epoch &+= 1
        }
    }

    func didTerminate() {
        // Nobody reads any more: keep the assignment paused (and keep polling) until the consumer closes.
        state.withLock { $0.demand = false }
    }
}
