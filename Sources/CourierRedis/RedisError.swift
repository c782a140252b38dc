//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// An error reply from the Redis server (`-WRONGTYPE Operation against a key holding the wrong kind of value`).
///
/// The command reached Redis and Redis refused it; the connection is fine and stays usable. Transport failures
/// (not connected, connection lost, timed out, cancelled) are thrown as ``CourierCore/CourierError`` instead.
/// `CourierError(redisError)` converts one into the other, with code ``CourierCore/CourierError/Code/remote``.
public struct RedisError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The whole error text as Redis sent it, such as `WRONGTYPE Operation against a key …`.
    public var message: String

    /// Creates an error from the text of an error reply.
    public init(message: String) { self.message = message }

    /// The error's kind: the leading upper-case word Redis puts before the text (`ERR`, `WRONGTYPE`, `NOAUTH`,
    /// `WRONGPASS`, `NOPERM`, `BUSYGROUP`, …), or `nil` when the message has none.
    public var kind: String? {
        let word = message.prefix { $0 != " " }
        guard !word.isEmpty, word.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) else { return nil }
        return String(word)
    }

    /// `Redis error: ` followed by the message.
    public var description: String { "Redis error: \(message)" }
}

extension CourierError {
    /// The Courier form of a Redis error reply: code ``Code/remote``, Redis's message, the reply as `underlying`.
    public init(_ redisError: RedisError) {
        self.init(.remote, redisError.message, underlying: redisError)
    }
}
