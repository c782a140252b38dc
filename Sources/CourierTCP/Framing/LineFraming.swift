//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// Ascender's frames: one JSON text per line, ended by `\n` (a `\r` before it is dropped; empty lines are skipped).
struct LineFrameParser: FrameParser {
    /// The longest line accepted, in bytes, without its line end.
    let maxLineLength: Int
    /// How far the current line was searched for its end, so a long line is not rescanned on every read.
    private var searched = 0

    init(maxLineLength: Int) {
        self.maxLineLength = maxLineLength
    }

    mutating func nextFrame(in buffer: inout ByteBuffer) throws(FrameError) -> ByteBuffer? {
        while true {
            let view = buffer.readableBytesView
            guard let end = view.dropFirst(searched).firstIndex(of: UInt8(ascii: "\n")) else {
                searched = view.count
                // One byte of room for a "\r" whose "\n" has not arrived: the limit counts the line without its end.
                if view.count > maxLineLength + (view.last == UInt8(ascii: "\r") ? 1 : 0) {
                    throw FrameError(reason: "a line longer than the limit of \(maxLineLength) bytes")
                }
                return nil
            }
            searched = 0
            var length = end - view.startIndex
            let lineEnd = length + 1
            if length > 0, view[end - 1] == UInt8(ascii: "\r") { length -= 1 }
            guard length <= maxLineLength else {
                throw FrameError(reason: "a line of \(length) bytes exceeds the limit of \(maxLineLength)")
            }
            let line = buffer.getSlice(at: buffer.readerIndex, length: length)!
            buffer.moveReaderIndex(forwardBy: lineEnd)
            if length > 0 { return line }
            if buffer.readableBytes == 0 { return nil }
        }
    }
}
