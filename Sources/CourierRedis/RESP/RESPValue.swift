//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A Redis reply in the RESP2 protocol (the only one hiredis 0.14 reads, and the one Courier speaks).
///
/// A top-level error reply is not returned as a value: ``RedisConnection/send(_:)`` throws it as a ``RedisError``.
/// ``error(_:)`` appears only nested inside an array, such as in the reply to `EXEC`.
public enum RESPValue: Sendable, Hashable {
    /// A simple string (`+OK`, `+PONG`): short, not binary-safe.
    case simpleString(String)
    /// An error reply nested inside an array (`-WRONGTYPE …`).
    case error(String)
    /// An integer (`:42`).
    case integer(Int)
    /// A bulk string (`$3\r\nabc`): binary-safe bytes, or `nil` for the null bulk string (`$-1`, a missing key).
    case bulkString(ByteBuffer?)
    /// An array (`*2…`), or `nil` for the null array (`*-1`, a `BLPOP` that timed out on the server).
    case array([RESPValue]?)

    /// The value as text: a simple string, or a bulk string decoded as UTF-8 (invalid sequences replaced);
    /// `nil` for anything else.
    public var string: String? {
        switch self {
        case .simpleString(let text): text
        case .bulkString(let bytes?): String(buffer: bytes)
        default: nil
        }
    }

    /// The bytes of a bulk or simple string; `nil` for anything else.
    public var bytes: [UInt8]? {
        switch self {
        case .simpleString(let text): Array(text.utf8)
        case .bulkString(let bytes?): Array(bytes.readableBytesView)
        default: nil
        }
    }

    /// An integer reply, or a string reply holding a decimal integer (`INCRBYFLOAT` aside, Redis often returns
    /// numbers as bulk strings); `nil` otherwise.
    public var int: Int? {
        switch self {
        case .integer(let value): value
        case .simpleString, .bulkString: string.flatMap { Int($0) }
        default: nil
        }
    }

    /// The elements of a non-null array; `nil` otherwise.
    public var array: [RESPValue]? {
        if case .array(let elements?) = self { return elements }
        return nil
    }

    /// Whether this is the null bulk string or the null array.
    public var isNull: Bool {
        switch self {
        case .bulkString(nil), .array(nil): true
        default: false
        }
    }
}

extension RESPValue: CustomStringConvertible {
    /// A readable rendering for logs and test failures: strings quoted, bytes that are not UTF-8 escaped.
    public var description: String {
        switch self {
        case .simpleString(let text): return text
        case .error(let message): return "(error) \(message)"
        case .integer(let value): return "(integer) \(value)"
        case .bulkString(nil), .array(nil): return "(nil)"
        case .bulkString(let bytes?):
            let view = bytes.readableBytesView
            if let text = String(validating: view, as: UTF8.self) { return "\"\(text)\"" }
            return "<\(view.count) bytes>"
        case .array(let elements?): return "[" + elements.map(\.description).joined(separator: ", ") + "]"
        }
    }
}
