//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// The one error type Courier throws, and the one a handler throws to send a coded error to its caller.
///
/// An error has a numeric ``Code`` (HTTP-flavoured, so `422` means what an HTTP user expects), a human
/// readable ``message`` and optional JSON ``details``. When a handler throws a `CourierError`, the caller receives
/// exactly that code, message and details, with ``isRemote`` set. Any other error thrown by a handler is logged on
/// the worker and reaches the caller as NestJS's generic `{"status":"error","message":"Internal server error"}`,
/// which surfaces as code ``Code/remote``.
///
/// Equality compares ``code`` only, so `catch let error as CourierError where error.code == .timedOut` reads
/// naturally.
public struct CourierError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A numeric error code. Courier's own conditions are static members; any other integer is a user code.
    public struct Code: RawRepresentable, Sendable, Hashable, CustomStringConvertible,
        ExpressibleByIntegerLiteral
    {
        /// The numeric value sent on the wire.
        public var rawValue: Int

        /// A code with this numeric value.
        public init(rawValue: Int) { self.rawValue = rawValue }
        /// A code with this numeric value, such as `CourierError.Code(409)`.
        public init(_ rawValue: Int) { self.rawValue = rawValue }
        /// A code from an integer literal: `error.code == 409`.
        public init(integerLiteral value: Int) { self.rawValue = value }

        /// 400: a payload could not be decoded into the expected type (request on the worker, reply on the caller).
        public static let decodingFailed = Code(400)
        /// 408: no final reply arrived before the call's deadline.
        public static let timedOut = Code(408)
        /// 413: a message is larger than the transport's configured limit.
        public static let payloadTooLarge = Code(413)
        /// 422: the request was understood but cannot be processed. Not used by Courier itself; for handlers.
        public static let unprocessable = Code(422)
        /// 499: the caller gave up (its task was cancelled, or it stopped iterating a stream).
        public static let cancelled = Code(499)
        /// 500: a value could not be encoded to send it.
        public static let encodingFailed = Code(500)
        /// 501: the remote service has no handler for the pattern.
        public static let noHandler = Code(501)
        /// 502: the remote service answered with an error that carried no code (a NestJS `RpcException`, or any
        /// non-Courier error thrown by a Courier handler).
        public static let remote = Code(502)
        /// 503: the transport cannot reach the other side: not connected, connection lost, shutting down.
        public static let transportUnavailable = Code(503)

        public var description: String {
            switch self {
            case .decodingFailed: "decodingFailed(400)"
            case .timedOut: "timedOut(408)"
            case .payloadTooLarge: "payloadTooLarge(413)"
            case .unprocessable: "unprocessable(422)"
            case .cancelled: "cancelled(499)"
            case .encodingFailed: "encodingFailed(500)"
            case .noHandler: "noHandler(501)"
            case .remote: "remote(502)"
            case .transportUnavailable: "transportUnavailable(503)"
            default: "code(\(rawValue))"
            }
        }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human readable explanation, sent to the caller as is.
    public var message: String
    /// Optional structured details, sent to the caller as JSON.
    public var details: JSONValue?
    /// Whether this error was produced by the remote service (and carried over the wire) rather than locally.
    public var isRemote: Bool
    /// The local error that caused this one, if any (never sent over the wire).
    public var underlying: (any Error)?

    /// Creates an error.
    ///
    /// - Parameters:
    ///   - code: What kind of failure this is.
    ///   - message: A human readable explanation.
    ///   - details: Optional structured details for the caller.
    ///   - underlying: A local error that caused this one; logged, never sent.
    public init(
        _ code: Code,
        _ message: String,
        details: JSONValue? = nil,
        underlying: (any Error)? = nil
    ) {
        self.code = code
        self.message = message
        self.details = details
        self.isRemote = false
        self.underlying = underlying
    }

    public static func == (lhs: CourierError, rhs: CourierError) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    public var description: String {
        var text = "\(code): \(message)"
        if let details { text += " \(details)" }
        if let underlying { text += " (underlying: \(underlying))" }
        return text
    }
}

extension CourierError {
    /// A call's deadline passed without a final reply.
    public static func timedOut(_ pattern: String, after timeout: Duration? = nil) -> CourierError {
        if let timeout {
            return CourierError(.timedOut, "no reply for '\(pattern)' within \(timeout)")
        }
        return CourierError(.timedOut, "no reply for '\(pattern)' before its deadline")
    }

    /// A stream waited longer than its idle timeout for its next element, before its deadline.
    public static func idleTimedOut(_ pattern: String, after idleTimeout: Duration) -> CourierError {
        CourierError(.timedOut, "no reply element for '\(pattern)' within its idle timeout of \(idleTimeout)")
    }

    /// The caller's task was cancelled or it stopped waiting.
    public static func cancelled(_ pattern: String) -> CourierError {
        CourierError(.cancelled, "call to '\(pattern)' was cancelled")
    }

    /// The transport cannot currently deliver.
    public static func unavailable(_ message: String, underlying: (any Error)? = nil) -> CourierError {
        CourierError(.transportUnavailable, message, underlying: underlying)
    }

    /// Wraps an arbitrary error into a Courier error if it is not one already.
    public static func wrapping(_ error: any Error, as code: Code, _ message: String) -> CourierError {
        if let courier = error as? CourierError { return courier }
        return CourierError(code, "\(message): \(error)", underlying: error)
    }
}

extension CourierError {
    /// The error of a batch of `count` events on `pattern` (``ClientTransport/emit(batch:)``) of which the events at
    /// `failures` (indices from 0, in order) failed and, from `firstUnsent` on, the others were not sent; the rest
    /// were accepted.
    ///
    /// It has the code of the first failure (``Code/transportUnavailable`` for an error that is not a
    /// `CourierError`), a message naming the failed events (from 1) with their reasons and saying what became of the
    /// others, `details` `{"failed":[indices from 0],"accepted":N,"notSent":N}`, and the first failure as
    /// `underlying`.
    package static func batch(
        _ pattern: String,
        count: Int,
        failures: [(index: Int, error: any Error)],
        firstUnsent: Int? = nil
    ) -> CourierError {
        precondition(!failures.isEmpty, "a failed batch has a failed event")
        let unsentFrom = firstUnsent ?? count
        let notSent = max(0, count - unsentFrom) - failures.count { $0.index >= unsentFrom }
        let accepted = count - failures.count - notSent
        let shown = 3
        var reasons = failures.prefix(shown).map { index, error in
            "event \(index + 1): \((error as? CourierError)?.message ?? "\(error)")"
        }
        if failures.count > shown { reasons.append("\(failures.count - shown) more") }
        var message = "\(failures.count) of \(count) '\(pattern)' events failed (\(reasons.joined(separator: "; ")))"
        if notSent > 0 {
            message += unsentFrom == 0 ? "; the other \(notSent) were not sent"
                : "; the \(notSent) after event \(unsentFrom) were not sent"
        }
        message += accepted > 0 ? "; \(accepted) accepted" : "; none accepted"
        let first = failures[0].error
        return CourierError(
            (first as? CourierError)?.code ?? .transportUnavailable,
            message,
            details: [
                "failed": .array(failures.map { .integer(Int64($0.index)) }),
                "accepted": .integer(Int64(accepted)),
                "notSent": .integer(Int64(notSent)),
            ],
            underlying: first
        )
    }

    /// Whether this error says that a message itself cannot be sent, now or ever (too large, not encodable, or
    /// refused for what it is, such as a reply address that is not legal), as opposed to a transport that could
    /// not take it now. Sending the same message again cannot help.
    package var rejectsTheMessageItself: Bool {
        !isRemote && (code == .payloadTooLarge || code == .unprocessable || code == .encodingFailed)
    }
}
