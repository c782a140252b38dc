//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// NestJS `<length>#<json>` frames, where `<length>` counts the UTF-16 code units of the JSON text (JavaScript's
/// `string.length`), not its bytes. It scans incrementally: a large frame arriving in many reads is scanned once.
package struct NestFrameParser: FrameParser {
    let maxFrameLength: Int
    /// Progress through the current frame's body, so a partial frame is not rescanned on every read.
    private var frame: FrameProgress?

    /// The longest length prefix accepted (enough for any frame under the limit).
    private static let maxPrefixDigits = 12

    package init(maxFrameLength: Int) {
        self.maxFrameLength = maxFrameLength
    }

    package mutating func nextFrame(in buffer: inout ByteBuffer) throws(FrameError) -> ByteBuffer? {
        if frame == nil {
            // Parse `<digits>#`.
            var length = 0
            var digits = 0
            var found = false
            for byte in buffer.readableBytesView {
                if byte == UInt8(ascii: "#") {
                    found = true
                    break
                }
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else {
                    throw FrameError(reason: "corrupted length prefix: byte 0x\(String(byte, radix: 16)) is not a digit")
                }
                digits += 1
                guard digits <= Self.maxPrefixDigits else {
                    throw FrameError(reason: "corrupted length prefix: more than \(Self.maxPrefixDigits) digits")
                }
                length = length * 10 + Int(byte - UInt8(ascii: "0"))
            }
            guard found else { return nil }
            guard digits > 0 else { throw FrameError(reason: "corrupted length prefix: no digits before '#'") }
            guard length <= maxFrameLength else {
                throw FrameError(reason: "frame of \(length) characters exceeds the limit of \(maxFrameLength)")
            }
            frame = FrameProgress(bodyOffset: digits + 1, units: length)
        }
        guard var progress = frame else { return nil }
        // Count UTF-16 units, continuing where the previous read stopped; a sequence split across reads is left
        // for the next one.
        let available = buffer.readableBytes - progress.bodyOffset
        buffer.withUnsafeReadableBytes { raw in
            // ASCII bytes are one unit each, then byte by byte.
            let ascii = NestFraming.asciiRun(
                in: raw, from: progress.bodyOffset + progress.scannedBytes,
                atMost: min(progress.units - progress.scannedUnits, available - progress.scannedBytes)
            )
            progress.scannedUnits += ascii
            progress.scannedBytes += ascii
            while progress.scannedUnits < progress.units, progress.scannedBytes < available {
                let (width, units) = Self.sequenceShape(raw[progress.bodyOffset + progress.scannedBytes])
                guard progress.scannedBytes + width <= available else { break }
                progress.scannedUnits += units
                progress.scannedBytes += width
            }
        }
        guard progress.scannedUnits >= progress.units else {
            frame = progress
            return nil
        }
        guard progress.scannedUnits == progress.units else {
            throw FrameError(reason: "frame length \(progress.units) ends inside a surrogate pair")
        }
        let body = buffer.getSlice(at: buffer.readerIndex + progress.bodyOffset, length: progress.scannedBytes)!
        buffer.moveReaderIndex(forwardBy: progress.bodyOffset + progress.scannedBytes)
        frame = nil
        return body
    }

    /// The byte length of the UTF-8 sequence a lead byte starts and how many UTF-16 units it encodes. Invalid
    /// bytes count as one unit each, as a JavaScript decoder's replacement character would.
    @inline(__always)
    static func sequenceShape(_ byte: UInt8) -> (width: Int, units: Int) {
        switch byte {
        case 0..<0x80: (1, 1)
        case 0xC0..<0xE0: (2, 1)
        case 0xE0..<0xF0: (3, 1)
        case 0xF0..<0xF8: (4, 2)
        default: (1, 1)
        }
    }
}

extension FrameDecoder where Parser == NestFrameParser {
    /// A decoder of NestJS frames.
    package convenience init(maxFrameLength: Int, incompleteFrameTimeout: TimeAmount?) {
        self.init(parser: NestFrameParser(maxFrameLength: maxFrameLength), incompleteFrameTimeout: incompleteFrameTimeout)
    }
}

/// The decoder of NestJS `<length>#<json>` frames.
package typealias NestFrameDecoder = FrameDecoder<NestFrameParser>

/// How far the decoder got through the body of the frame being received.
private struct FrameProgress {
    /// Where the body starts, relative to the reader index (just after `#`).
    var bodyOffset: Int
    /// The declared length, in UTF-16 units.
    var units: Int
    var scannedUnits = 0
    var scannedBytes = 0
}

/// Builds NestJS TCP frames.
enum NestFraming {
    /// Room reserved in front of the JSON text for the `<length>#` prefix (12 digits and `#`).
    private static let prefixRoom = 13

    /// Frames a reply as `<utf16 length>#<json>`.
    static func frame(_ reply: WireReply, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: prefixRoom + NestJSEnvelope.capacity(for: reply))
        buffer.moveWriterIndex(forwardBy: prefixRoom)
        buffer.moveReaderIndex(forwardBy: prefixRoom)
        NestJSEnvelope.encode(reply, into: &buffer)
        prefix(&buffer)
        return buffer
    }

    /// Frames a request or event as `<utf16 length>#<json>`.
    static func frame(_ request: WireRequest, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: prefixRoom + NestJSEnvelope.capacity(for: request))
        buffer.moveWriterIndex(forwardBy: prefixRoom)
        buffer.moveReaderIndex(forwardBy: prefixRoom)
        NestJSEnvelope.encode(request, into: &buffer)
        prefix(&buffer)
        return buffer
    }

    /// Writes the `<length>#` prefix into the room in front of the body. In place: a copy of the buffer (as a
    /// parameter taken by value and then modified would be) makes the write copy the whole frame's storage.
    private static func prefix(_ buffer: inout ByteBuffer) {
        let units = buffer.withUnsafeReadableBytes { utf16Length(of: $0) }
        let digits = PieceWriter.decimalLength(Int64(units))
        // One write of the prefix into the room left in front of the body (not a checked write per digit).
        var prefix: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &prefix) { raw in
            var value = units
            for position in stride(from: digits - 1, through: 0, by: -1) {
                raw[position] = UInt8(ascii: "0") + UInt8(value % 10)
                value /= 10
            }
            raw[digits] = UInt8(ascii: "#")
        }
        let start = buffer.readerIndex - digits - 1
        withUnsafeBytes(of: &prefix) { raw in
            _ = buffer.setBytes(UnsafeRawBufferPointer(rebasing: raw[0...digits]), at: start)
        }
        buffer.moveReaderIndex(to: start)
    }

    /// The declared body length of a frame built by this type.
    static func bodyLength(of frame: ByteBuffer) -> Int {
        var length = 0
        for byte in frame.readableBytesView {
            guard byte != UInt8(ascii: "#") else { break }
            length = length * 10 + Int(byte &- UInt8(ascii: "0"))
        }
        return length
    }

    /// How many bytes from `start`, at most `limit`, are ASCII, counted eight at a time: a whole number of words,
    /// so the caller goes on byte by byte. Envelopes are mostly ASCII, one UTF-16 unit per byte.
    static func asciiRun(in bytes: UnsafeRawBufferPointer, from start: Int, atMost limit: Int) -> Int {
        var length = 0
        while limit - length >= 8,
            bytes.loadUnaligned(fromByteOffset: start + length, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
        {
            length += 8
        }
        return length
    }

    /// The number of UTF-16 code units the UTF-8 `bytes` decode to.
    static func utf16Length(of bytes: UnsafeRawBufferPointer) -> Int {
        let ascii = asciiRun(in: bytes, from: 0, atMost: bytes.count)
        var units = ascii
        for byte in bytes[ascii...] {
            // Continuation bytes add nothing; 4-byte leads add a surrogate pair.
            if byte & 0xC0 != 0x80 { units += 1 }
            if byte >= 0xF0 { units += 1 }
        }
        return units
    }
}
