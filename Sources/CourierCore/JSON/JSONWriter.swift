//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// Compact JSON serialisation into byte buffers.
///
/// The output is deterministic: object keys are sorted by their UTF-8 bytes (which is Unicode code point order),
/// so equal values always produce equal bytes, which keeps logs, hashes and golden tests stable. Strings are
/// escaped minimally per RFC 8259: only `"`, `\` and control characters are escaped, and everything else,
/// including `/` and non-ASCII text, is written literally as UTF-8.
package enum JSONWriter {
    /// Appends a string as a JSON string literal, quotes included.
    ///
    /// `"` and `\` are escaped with a backslash; control characters below U+0020 use `\n`, `\r`, `\t`, `\b`,
    /// `\f` or `\u00XX` with lowercase hex; everything else is copied as UTF-8.
    ///
    /// - Parameters:
    ///   - string: The text to write.
    ///   - out: The buffer to append to.
    package static func appendString(_ string: String, to out: inout [UInt8]) {
        var string = string
        // Native strings are already contiguous UTF-8, so this does not copy them.
        string.withUTF8 { appendString(utf8: $0, to: &out) }
    }

    /// Appends the compact serialisation of a value.
    ///
    /// Non-finite doubles, which JSON cannot express, are written as `null`. Other doubles use Swift's shortest
    /// round-tripping representation, so parsing the output gives back the same `Double`.
    ///
    /// - Parameters:
    ///   - value: The value to write.
    ///   - out: The buffer to append to.
    package static func append(_ value: JSONValue, to out: inout [UInt8]) {
        switch value {
        case .null:
            out.append(contentsOf: "null".utf8)
        case .bool(let bool):
            out.append(contentsOf: bool ? "true".utf8 : "false".utf8)
        case .integer(let integer):
            appendInteger(integer, to: &out)
        case .double(let double):
            if double.isFinite {
                out.append(contentsOf: double.description.utf8)
            } else {
                out.append(contentsOf: "null".utf8)
            }
        case .string(let string):
            appendString(string, to: &out)
        case .array(let elements):
            out.append(JSONByte.openBracket)
            for (index, element) in elements.enumerated() {
                if index > 0 {
                    out.append(JSONByte.comma)
                }
                append(element, to: &out)
            }
            out.append(JSONByte.closeBracket)
        case .object(let members):
            out.append(JSONByte.openBrace)
            if members.count == 1, let member = members.first {
                appendMember(member.key, member.value, to: &out)
            } else if members.count > 1 {
                // Swift's `<` on String compares canonical equivalence, not code points, so sort by UTF-8 bytes.
                let sorted = members.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                for (index, member) in sorted.enumerated() {
                    if index > 0 {
                        out.append(JSONByte.comma)
                    }
                    appendMember(member.key, member.value, to: &out)
                }
            }
            out.append(JSONByte.closeBrace)
        }
    }

    private static func appendMember(_ key: String, _ value: JSONValue, to out: inout [UInt8]) {
        appendString(key, to: &out)
        out.append(JSONByte.colon)
        append(value, to: &out)
    }

    /// Writes decimal digits directly, avoiding an intermediate `String`.
    private static func appendInteger(_ value: Int64, to out: inout [UInt8]) {
        if value < 0 {
            out.append(JSONByte.minus)
        }
        var magnitude = value.magnitude
        let firstDigit = out.count
        repeat {
            out.append(JSONByte.zero + UInt8(truncatingIfNeeded: magnitude % 10))
            magnitude /= 10
        } while magnitude != 0
        var low = firstDigit
        var high = out.count - 1
        while low < high {
            out.swapAt(low, high)
            low += 1
            high -= 1
        }
    }

    /// Copies runs of bytes that need no escaping in one go, escaping only the bytes in between.
    private static func appendString(utf8: UnsafeBufferPointer<UInt8>, to out: inout [UInt8]) {
        out.append(JSONByte.quote)
        var runStart = 0
        for index in 0..<utf8.count {
            let byte = utf8[index]
            guard byte < 0x20 || byte == JSONByte.quote || byte == JSONByte.backslash else {
                continue
            }
            if runStart < index {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart..<index]))
            }
            appendEscape(for: byte, to: &out)
            runStart = index + 1
        }
        if runStart < utf8.count {
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[runStart...]))
        }
        out.append(JSONByte.quote)
    }

    private static func appendEscape(for byte: UInt8, to out: inout [UInt8]) {
        out.append(JSONByte.backslash)
        switch byte {
        case JSONByte.quote, JSONByte.backslash: out.append(byte)
        case JSONByte.lineFeed: out.append(JSONByte.lowerN)
        case JSONByte.carriageReturn: out.append(JSONByte.lowerR)
        case JSONByte.tab: out.append(JSONByte.lowerT)
        case 0x08: out.append(JSONByte.lowerB)
        case 0x0C: out.append(JSONByte.lowerF)
        default:
            let hexDigits: StaticString = "0123456789abcdef"
            let digits = hexDigits.utf8Start
            out.append(JSONByte.lowerU)
            out.append(JSONByte.zero)
            out.append(JSONByte.zero)
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0xF)])
        }
    }
}
