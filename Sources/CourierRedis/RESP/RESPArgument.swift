//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// One argument of a Redis command: text, or arbitrary bytes (binary-safe: `\0` and `\r\n` are fine).
///
/// String and integer literals are arguments, so a command reads `["SET", "greeting", "hello"]` or
/// `["EXPIRE", "greeting", 10]`; bytes are wrapped explicitly: `["SET", "blob", RESPArgument(bytes: data)]`.
public struct RESPArgument: Sendable, Hashable, ExpressibleByStringInterpolation, ExpressibleByIntegerLiteral {
    enum Storage: Sendable, Hashable {
        case text(String)
        case bytes(ByteBuffer)
    }

    let storage: Storage

    /// A text argument, sent as its UTF-8 bytes.
    public init(_ text: String) { storage = .text(text) }

    /// A bytes argument; the buffer's readable bytes are sent as they are, without a copy until encoding.
    public init(_ bytes: ByteBuffer) { storage = .bytes(bytes) }

    /// A bytes argument copied from any byte collection, such as `[UInt8]`.
    public init(bytes: some Collection<UInt8>) { storage = .bytes(ByteBuffer(bytes: bytes)) }

    /// An integer argument, sent in decimal as Redis expects (`EXPIRE k 10`).
    public init(_ integer: Int) { storage = .text(String(integer)) }

    /// A text argument from a string literal.
    public init(stringLiteral value: String) { storage = .text(value) }

    /// An integer argument from an integer literal.
    public init(integerLiteral value: Int) { self.init(value) }

    /// The number of bytes this argument puts on the wire (without RESP framing).
    var byteCount: Int {
        switch storage {
        case .text(let text): text.utf8.count
        case .bytes(let bytes): bytes.readableBytes
        }
    }

    /// Copies the argument's bytes to the start of `target`, which holds at least ``byteCount`` bytes.
    func copyBytes(to target: UnsafeMutableRawBufferPointer) {
        switch storage {
        case .text(let text):
            target.copyBytes(from: text.utf8)
        case .bytes(let bytes):
            bytes.withUnsafeReadableBytes { target.copyMemory(from: $0) }
        }
    }
}

extension RESPArgument: CustomStringConvertible {
    /// The text, or a byte count for bytes that are not UTF-8 (never the raw bytes, which may be binary).
    public var description: String {
        switch storage {
        case .text(let text): text
        case .bytes(let bytes):
            String(validating: bytes.readableBytesView, as: UTF8.self) ?? "<\(bytes.readableBytes) bytes>"
        }
    }
}
