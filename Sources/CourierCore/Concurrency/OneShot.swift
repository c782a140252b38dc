//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// A value delivered once, from any thread, to one waiting task; delivery may come before the wait.
///
/// Its continuation is unsafe (the state machine resumes it exactly once): a checked one's layout is not known
/// outside the standard library, so each copy of it goes through value witnesses.
package final class OneShot<Value: Sendable>: Sendable {
    private enum State {
        case empty
        case waiting(UnsafeContinuation<Value, Never>)
        case delivered(Value)
    }

    private let state = Mutex(State.empty)

    /// Delivers the value; later calls are ignored.
    package init() {}

    package func deliver(_ value: Value) {
        let waiter = state.withLock { state -> UnsafeContinuation<Value, Never>? in
            switch state {
            case .empty:
                state = .delivered(value)
                return nil
            case .waiting(let continuation):
                state = .delivered(value)
                return continuation
            case .delivered:
                return nil
            }
        }
        waiter?.resume(returning: value)
    }

    /// Waits for the value.
    package var value: Value {
        get async {
            await withUnsafeContinuation { continuation in
                let ready = state.withLock { state -> Value? in
                    if case .delivered(let value) = state { return value }
                    state = .waiting(continuation)
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }
}
