//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// A client transport's connection, opened by the first caller that needs it and shared by every concurrent one.
///
/// States: idle → connecting (one attempt every concurrent caller awaits) → connected, and back to idle when an
/// attempt fails, so the next call tries again; closed for good after ``close()``.
package final class LazyConnection<Connection: Sendable>: Sendable {
    private enum State {
        case idle
        case connecting(Task<Connection, any Error>)
        case connected(Connection)
        case closed
    }

    private let state = Mutex<State>(.idle)
    private let closedMessage: String

    /// - Parameter closedMessage: The ``CourierError/Code/transportUnavailable`` message once closed.
    package init(closedMessage: String) {
        self.closedMessage = closedMessage
    }

    /// The open connection, opening it with `open` if there is none.
    ///
    /// - Throws: What `open` throws, or ``CourierError/Code/transportUnavailable`` once closed.
    package func get(open: @escaping @Sendable () async throws -> Connection) async throws -> Connection {
        // Either the open connection or the attempt to wait for.
        let found = try state.withLock { state -> (Connection?, Task<Connection, any Error>?) in
            switch state {
            case .connected(let connection):
                return (connection, nil)
            case .connecting(let task):
                return (nil, task)
            case .closed:
                throw CourierError.unavailable(closedMessage)
            case .idle:
                let task = Task { try await open() }
                state = .connecting(task)
                return (nil, task)
            }
        }
        if let connection = found.0 { return connection }
        guard let task = found.1 else { throw CourierError.unavailable(closedMessage) }
        // Only this attempt's outcome changes the state: a caller resuming late from a failed attempt must not
        // reset a newer attempt (another caller would start a third, whose connection nobody would close).
        do {
            let connection = try await task.value
            state.withLock { state in
                if case .connecting(let current) = state, current == task { state = .connected(connection) }
            }
            return connection
        } catch {
            state.withLock { state in
                if case .connecting(let current) = state, current == task { state = .idle }
            }
            throw error
        }
    }

    /// Closes for good; returns the connection that was open (or being opened) for the caller to close.
    package func close() async -> Connection? {
        let previous = state.withLock { state -> State in
            defer { state = .closed }
            return state
        }
        switch previous {
        case .connected(let connection): return connection
        case .connecting(let task): return try? await task.value
        case .idle, .closed: return nil
        }
    }
}
