//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// An encoded command on its way to a Redis connection, with what it expects back and who waits for it.
struct RedisRequest: Sendable {
    /// What completes a request.
    enum Expectation: Sendable {
        /// One reply (every ordinary command).
        case reply
        /// `count` confirmations `[kind, name, count]`, one per channel or pattern of a (P)(UN)SUBSCRIBE.
        case confirmations(kind: String, count: Int)
    }

    /// The RESP bytes to write.
    var command: ByteBuffer
    /// The command's name, for error messages.
    var name: String
    var expectation: Expectation
    /// Completed with the reply (the last confirmation), or failed: ``RedisError`` for an error reply,
    /// ``CourierError`` otherwise. The caller may fail it first (cancellation); the reply is then discarded.
    var promise: EventLoopPromise<RESPValue>
    /// How long the reply may take once the command is written; `nil` waits as long as the connection lives.
    var timeout: Duration?

    /// Encodes `arguments` into a request.
    init(
        _ arguments: [RESPArgument],
        expectation: Expectation = .reply,
        timeout: Duration?,
        promise: EventLoopPromise<RESPValue>
    ) throws {
        command = try RESPCommandEncoder.encode(arguments, allocator: ByteBufferAllocator())
        name = arguments.first.map { String($0.description.prefix(32)) } ?? ""
        self.expectation = expectation
        self.promise = promise
        self.timeout = timeout
    }
}
