//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// A value delivered once, from any thread, to every task that waits for it; delivery may come before the waits.
///
/// Its continuations are unsafe (the state machine resumes each exactly once): a checked one's layout is not known
/// outside the standard library, so each copy of it goes through value witnesses. The first waiter is kept apart
/// from any others, so that the usual single wait allocates nothing.
package final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case empty
        case waiting(UnsafeContinuation<Value, Never>, more: [UnsafeContinuation<Value, Never>])
        case delivered(Value)
    }

    private let state = Mutex(State.empty)

    /// Delivers the value; later calls are ignored.
    package init() {}

    package func deliver(_ value: Value) {
        let waiters = state.withLock { state -> (UnsafeContinuation<Value, Never>, [UnsafeContinuation<Value, Never>])? in
            switch state {
            case .empty:
                state = .delivered(value)
                return nil
            case .waiting(let first, let more):
                state = .delivered(value)
                return (first, more)
            case .delivered:
                return nil
            }
        }
        guard let (first, more) = waiters else { return }
        first.resume(returning: value)
        for waiter in more { waiter.resume(returning: value) }
    }

    /// Waits for the value.
    package var value: Value {
        get async {
            await withUnsafeContinuation { continuation in
                let ready = state.withLock { state -> Value? in
                    switch state {
                    case .delivered(let value):
                        return value
                    case .empty:
                        state = .waiting(continuation, more: [])
                    case .waiting(let first, var more):
                        // Several waiters (a partition's lane awaited by its revocation and by the lane that
                        // follows it): none may replace another.
                        more.append(continuation)
                        state = .waiting(first, more: more)
                    }
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
