//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization

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
    /// Who learns the outcome: a promise completed with the reply (the last confirmation), or failed with
    /// ``RedisError`` for an error reply and ``CourierError`` otherwise (the caller may fail it first, on cancellation;
    /// the reply is then discarded); or, for a command nobody waits for, a count of unanswered commands.
    var completion: Completion
    /// How long the reply may take once the command is written; `nil` waits as long as the connection lives.
    var timeout: Duration?

    /// Encodes `arguments` into a request.
    init(
        _ arguments: [RESPArgument],
        expectation: Expectation = .reply,
        timeout: Duration?,
        promise: EventLoopPromise<RESPValue>
    ) throws {
        try self.init(arguments, expectation: expectation, timeout: timeout, completion: .promise(promise))
    }

    /// Encodes `arguments` into a request whose outcome goes to `completion`.
    init(
        _ arguments: [RESPArgument],
        expectation: Expectation = .reply,
        timeout: Duration?,
        completion: Completion
    ) throws {
        command = try RESPCommandEncoder.encode(arguments, allocator: ByteBufferAllocator())
        name = arguments.first.map { String($0.description.prefix(32)) } ?? ""
        self.expectation = expectation
        self.completion = completion
        self.timeout = timeout
    }

    /// Where a request's outcome goes.
    enum Completion: Sendable {
        case promise(EventLoopPromise<RESPValue>)
        /// Nobody waits: the command is counted as answered, and a failure is reported to the count's owner.
        case counted(RedisUnansweredCommands)
        /// Called with the answer on the connection's event loop; spares the promise, its future and its callback
        /// list when only a callback would consume them.
        case callback(@Sendable (Result<RESPValue, any Error>) -> Void)

        func succeed(_ value: RESPValue) {
            switch self {
            case .promise(let promise): promise.succeed(value)
            case .counted(let commands): commands.answered(failure: nil)
            case .callback(let callback): callback(.success(value))
            }
        }

        func fail(_ error: any Error) {
            switch self {
            case .promise(let promise): promise.fail(error)
            case .counted(let commands): commands.answered(failure: error)
            case .callback(let callback): callback(.failure(error))
            }
        }
    }
}

/// Commands sent without a promise, counted until Redis answers them; failures go to `onFailure`.
///
/// A promise, its future and a callback per command cost a client about 10 % of its CPU when emitting events
/// without waiting for their answers; a count costs two atomic operations.
package final class RedisUnansweredCommands: Sendable {
    private let count = Atomic<Int>(0)
    private let onFailure: @Sendable (any Error) -> Void

    package init(onFailure: @escaping @Sendable (any Error) -> Void) {
        self.onFailure = onFailure
    }

    /// Commands sent and not answered yet.
    package var unanswered: Int { count.load(ordering: .relaxed) }

    func sent() {
        count.wrappingAdd(1, ordering: .relaxed)
    }

    func answered(failure: (any Error)?) {
        count.wrappingSubtract(1, ordering: .relaxed)
        if let failure { onFailure(failure) }
    }
}
