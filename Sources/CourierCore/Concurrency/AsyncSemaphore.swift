//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// A counting semaphore for tasks: `acquire` suspends while no permit is free, in FIFO order, and gives up when
/// its task is cancelled. Bounds handler concurrency in `Microservice` and buffered records in the Kafka worker.
package final class AsyncSemaphore: Sendable {
    /// Unsafe continuations: each waiter leaves the queue under the lock exactly once (granted or cancelled) and is
    /// resumed then. `CheckedContinuation`'s layout is not known outside the standard library, so every copy and
    /// destruction of an optional waiter went through value witnesses, on every acquire and release (about 3 % of a
    /// Kafka worker's CPU, which releases once per record).
    private struct Waiter {
        let id: UInt64
        let continuation: UnsafeContinuation<Bool, Never>
    }

    private struct State {
        var available: Int
        var waiters = CircularBuffer<Waiter>()
        var nextID: UInt64 = 0
    }

    private let state: Mutex<State>

    package init(permits: Int) {
        state = Mutex(State(available: permits))
    }

    /// The permits free now: how many acquires would succeed without waiting.
    package var availablePermits: Int { state.withLock { $0.available } }

    /// Takes a permit, waiting for one if needed.
    ///
    /// - Returns: `false` if the task was cancelled before a permit was granted.
    package func acquire() async -> Bool {
        let fast = state.withLock { state -> UInt64? in
            if state.available > 0 {
                state.available -= 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let id = fast else { return true }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                let resumeNow = state.withLock { state -> Bool in
                    if Task.isCancelled { return true }
                    if state.available > 0 {  // a permit came back in between
                        state.available -= 1
                        continuation.resume(returning: true)
                        return false
                    }
                    state.waiters.append(Waiter(id: id, continuation: continuation))
                    return false
                }
                if resumeNow { continuation.resume(returning: false) }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> Waiter? in
                guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return nil }
                return state.waiters.remove(at: index)
            }
            cancelled?.continuation.resume(returning: false)
        }
    }

    /// Takes a permit if one is free; never waits. (A free permit means nobody waits: ``release()`` hands a permit
    /// to the longest waiter rather than freeing it, so this cannot overtake a waiting task.)
    package func tryAcquire() -> Bool {
        state.withLock { state in
            guard state.available > 0 else { return false }
            state.available -= 1
            return true
        }
    }

    /// Returns a permit, waking the longest waiter.
    package func release() {
        let waiter = state.withLock { state -> Waiter? in
            // Checked first: most releases find nobody waiting, and `popFirst` on an empty buffer goes through
            // CircularBuffer's generic code, which is not specialized outside NIOCore.
            if state.waiters.isEmpty {
                state.available += 1
                return nil
            }
            return state.waiters.popFirst()
        }
        waiter?.continuation.resume(returning: true)
    }
}
