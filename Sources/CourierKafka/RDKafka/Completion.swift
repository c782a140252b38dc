//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// A one-shot signal a plain thread raises and any number of tasks await.
///
/// Poll threads finish with ``signal()`` instead of being joined: joining would block a thread of the cooperative
/// pool, which has only as many threads as cores.
package final class Completion: Sendable {
    private struct State {
        var done = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// A signal not raised yet.
    package init() {}

    /// Whether ``signal()`` has run.
    package var isDone: Bool { state.withLock { $0.done } }

    /// Marks the work done and resumes every waiter. Later calls do nothing.
    package func signal() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard !state.done else { return [] }
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns once ``signal()`` has run.
    package func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { state -> Bool in
                if state.done { return true }
                state.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}
