//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Synchronization

/// A Redis client transport's connection: opened by the first call that needs it (``LazyConnection``), then read on
/// every call from a `Mutex` of the concrete type.
///
/// `LazyConnection`'s generic code is not specialised outside CourierCore; read on every call, its generic metadata
/// lookups took 7 % of a client's CPU when emitting.
final class RedisClientConnectionSlot: Sendable {
    private let connection: LazyConnection<RedisClientConnection>
    private let open = Mutex<RedisClientConnection?>(nil)
    /// Set by ``close()``, so that a connection opened meanwhile is not kept.
    private let isClosed = Atomic<Bool>(false)

    init(closedMessage: String) {
        connection = LazyConnection(closedMessage: closedMessage)
    }

    /// The connection if it is open now, without waiting.
    var current: RedisClientConnection? { open.withLock { $0 } }

    /// The open connection, opening it with `opening` if there is none (see ``LazyConnection/get(open:)``).
    func get(
        opening: @escaping @Sendable () async throws -> RedisClientConnection
    ) async throws -> RedisClientConnection {
        if let current { return current }
        let opened = try await connection.get(open: opening)
        open.withLock { kept in
            // A close that raced with this call wins.
            if !isClosed.load(ordering: .relaxed) { kept = opened }
        }
        return opened
    }

    /// Closes for good; returns the connection that was open (or being opened) for the caller to close.
    func close() async -> RedisClientConnection? {
        isClosed.store(true, ordering: .relaxed)
        open.withLock { $0 = nil }
        return await connection.close()
    }
}
