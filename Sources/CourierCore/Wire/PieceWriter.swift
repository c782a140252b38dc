//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Copies the pieces of an envelope into memory that ``ByteBuffer/writePieces(length:_:)`` reserved.
///
/// Each `ByteBuffer.write…` call checks uniqueness, capacity and exclusivity; an envelope written piece by piece
/// paid that a dozen times, which cost more than the rest of a small RPC's encoding. Here the length is computed
/// first, and the pieces are copied with `memcpy` after a single reservation.
package struct PieceWriter {
    private let base: UnsafeMutableRawPointer
    private(set) var count = 0

    fileprivate init(_ base: UnsafeMutableRawPointer) {
        self.base = base
    }

    @inline(__always)
    package mutating func put(_ text: StaticString) {
        memcpy(base + count, text.utf8Start, text.utf8CodeUnitCount)
        count += text.utf8CodeUnitCount
    }

    @inline(__always)
    package mutating func put(_ byte: UInt8) {
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count += 1
    }

    /// Copies the UTF-8 of `text` (quote it with ``putQuoted(_:)`` when it is a JSON string).
    package mutating func put(_ text: String) {
        let copied = text.utf8.withContiguousStorageIfAvailable { bytes -> Int in
            if let source = bytes.baseAddress { memcpy(base + count, source, bytes.count) }
            return bytes.count
        }
        if let copied {
            count += copied
        } else {
            for byte in text.utf8 { put(byte) }
        }
    }

    /// `"text"`; the caller checked ``PieceWriter/isPlain(_:)``.
    package mutating func putQuoted(_ text: String) {
        put(UInt8(ascii: "\""))
        put(text)
        put(UInt8(ascii: "\""))
    }

    package mutating func put(_ buffer: ByteBuffer) {
        buffer.withUnsafeReadableBytes { bytes in
            if let source = bytes.baseAddress { memcpy(base + count, source, bytes.count) }
            count += bytes.count
        }
    }

    /// The decimal digits of a non-negative integer.
    package mutating func put(decimal value: Int64) {
        let digits = Self.decimalLength(value)
        var remaining = value
        for position in stride(from: count + digits - 1, through: count, by: -1) {
            base.storeBytes(of: UInt8(ascii: "0") + UInt8(remaining % 10), toByteOffset: position, as: UInt8.self)
            remaining /= 10
        }
        count += digits
    }

    /// The number of decimal digits of a non-negative integer.
    package static func decimalLength(_ value: Int64) -> Int {
        var digits = 1
        var rest = value / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        return digits
    }

    /// Whether `text` can go between JSON quotes as it is (nothing to escape).
    package static func isPlain(_ text: String) -> Bool {
        let plain = text.utf8.withContiguousStorageIfAvailable { bytes in
            for byte in bytes where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                return false
            }
            return true
        }
        if let plain { return plain }
        return !text.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
    }
}

extension ByteBuffer {
    /// Writes exactly `length` bytes through `body`, reserving once.
    package mutating func writePieces(length: Int, _ body: (inout PieceWriter) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: length) { raw in
            var writer = PieceWriter(raw.baseAddress!)
            body(&writer)
            precondition(writer.count == length, "envelope length \(writer.count) differs from the computed \(length)")
            return length
        }
    }
}
