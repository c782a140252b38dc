//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// An error thrown when bytes are not valid JSON.
///
/// The parser is strict (RFC 8259): anything the grammar does not allow is rejected rather than repaired, so a
/// peer that sends malformed payloads finds out immediately instead of having them half-understood.
public struct JSONError: Error, Sendable, Hashable, CustomStringConvertible {
    /// A human-readable explanation that ends with the offset, for example `unexpected character 'x' at offset 12`.
    public var message: String

    /// The byte offset in the input where the problem was found.
    public var offset: Int

    /// Creates an error from a complete message and the offset it refers to.
    ///
    /// Use this when you find a problem in JSON input yourself and want to report it the way the parser does.
    ///
    /// - Parameters:
    ///   - message: The full explanation, conventionally ending with `at offset N`.
    ///   - offset: The byte offset in the input where the problem was found.
    public init(message: String, offset: Int) {
        self.message = message
        self.offset = offset
    }

    /// The error's message.
    ///
    /// The message already names the offset, so nothing is added to it.
    public var description: String { message }
}

extension JSONError {
    /// Builds an error whose message ends with `at offset N`, the format every parser error uses.
    init(_ problem: String, at offset: Int) {
        self.init(message: "\(problem) at offset \(offset)", offset: offset)
    }

    /// The input ended while a value was still incomplete.
    static func unexpectedEnd(at offset: Int) -> JSONError {
        JSONError("unexpected end of input", at: offset)
    }

    /// A byte that the grammar does not allow here; printable ASCII is quoted, anything else shown in hex.
    static func unexpected(_ byte: UInt8, at offset: Int) -> JSONError {
        JSONError("unexpected \(describe(byte))", at: offset)
    }

    /// Describes a byte for an error message without putting raw control or non-ASCII bytes into the text.
    static func describe(_ byte: UInt8) -> String {
        if byte >= 0x20 && byte < 0x7F {
            return "character '\(Character(Unicode.Scalar(byte)))'"
        }
        return "byte 0x\(hex2(byte))"
    }

    /// Two lowercase hex digits.
    static func hex2(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}

/// The kind of a JSON value found by ``JSONScanner``.
///
/// Codecs use it to decide how to treat a member without parsing it, for example to hand an array through
/// untouched or to reject a number where a string is required.
package enum JSONKind: Sendable, Hashable {
    /// The literal `null`.
    case null
    /// The literal `true` or `false`.
    case bool
    /// A number.
    case number
    /// A string literal.
    case string
    /// An array.
    case array
    /// An object.
    case object
}

/// The bytes of JSON's structural characters, named so the scanner reads like the grammar.
enum JSONByte {
    static let quote: UInt8 = 0x22  // "
    static let backslash: UInt8 = 0x5C  // \
    static let slash: UInt8 = 0x2F  // /
    static let comma: UInt8 = 0x2C  // ,
    static let colon: UInt8 = 0x3A  // :
    static let minus: UInt8 = 0x2D  // -
    static let plus: UInt8 = 0x2B  // +
    static let dot: UInt8 = 0x2E  // .
    static let zero: UInt8 = 0x30  // 0
    static let nine: UInt8 = 0x39  // 9
    static let openBracket: UInt8 = 0x5B  // [
    static let closeBracket: UInt8 = 0x5D  // ]
    static let openBrace: UInt8 = 0x7B  // {
    static let closeBrace: UInt8 = 0x7D  // }
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let lineFeed: UInt8 = 0x0A
    static let carriageReturn: UInt8 = 0x0D
    static let lowerB: UInt8 = 0x62
    static let lowerE: UInt8 = 0x65
    static let upperE: UInt8 = 0x45
    static let lowerF: UInt8 = 0x66
    static let lowerN: UInt8 = 0x6E
    static let lowerR: UInt8 = 0x72
    static let lowerT: UInt8 = 0x74
    static let lowerU: UInt8 = 0x75
}

/// A strict, allocation-free JSON scanner over raw bytes, plus a parser that builds ``JSONValue`` trees.
///
/// Wire codecs call the static entry points once per message: ``scanObject(_:_:)`` walks the top-level envelope,
/// ``scanValue(in:from:)`` validates a member and reports where it lies, and ``decodeString(in:range:)`` and
/// ``parseValue(in:range:)`` materialise only the members a codec actually needs.
///
/// Every entry point validates fully (grammar, escapes, UTF-8 inside strings) and rejects nesting deeper than
/// ``maximumDepth``, so untrusted input can neither be misread nor exhaust the stack.
package struct JSONScanner {
    /// The deepest nesting of arrays and objects that is accepted.
    ///
    /// Bounding depth keeps the recursive tree builder's stack use small and the validator's state fixed-size.
    package static let maximumDepth = 512

    private let bytes: UnsafeRawBufferPointer
    /// One past the last byte this scanner may read; it can be less than `bytes.count` when scanning a range.
    private let end: Int
    private var offset: Int

    private init(bytes: UnsafeRawBufferPointer, offset: Int, end: Int) {
        precondition(offset >= 0 && offset <= end && end <= bytes.count, "range is outside the buffer")
        self.bytes = bytes
        self.offset = offset
        self.end = end
    }

    // MARK: - Entry points

    /// Scans one JSON value and reports where it lies and what kind it is.
    ///
    /// Whitespace before the value is skipped; nothing after the value is looked at, so the caller decides what
    /// may follow. The value is validated completely. Valid input is scanned without allocating.
    ///
    /// - Parameters:
    ///   - bytes: The buffer to scan.
    ///   - offset: Where to start; must be within `0...bytes.count`.
    /// - Returns: The byte range the value occupies (without surrounding whitespace) and its kind.
    /// - Throws: ``JSONError`` if the bytes at `offset` are not a valid JSON value or nest deeper than
    ///   ``maximumDepth``.
    package static func scanValue(
        in bytes: UnsafeRawBufferPointer,
        from offset: Int
    ) throws -> (range: Range<Int>, kind: JSONKind) {
        try scanValue(in: bytes, from: offset, maximumDepth: maximumDepth)
    }

    /// ``scanValue(in:from:)`` for a value nested in `maximumDepth`'s complement of containers (an object's member
    /// is scanned with one level less, as ``scanObject(_:_:)`` does).
    package static func scanValue(
        in bytes: UnsafeRawBufferPointer,
        from offset: Int,
        maximumDepth: Int
    ) throws -> (range: Range<Int>, kind: JSONKind) {
        var scanner = JSONScanner(bytes: bytes, offset: offset, end: bytes.count)
        scanner.skipWhitespace()
        return try scanner.scanValue(maximumDepth: maximumDepth)
    }

    /// Scans a whole document that must be a single JSON object, reporting each member.
    ///
    /// Surrounding whitespace is allowed; anything else before or after the object is an error. Members are
    /// reported in document order, duplicates included, so the caller chooses its own duplicate policy. Keys are
    /// reported raw so that a codec can compare them against known names without building a `String`.
    ///
    /// - Parameters:
    ///   - bytes: The whole document.
    ///   - body: Called once per member with the range of the key's content (between the quotes, still escaped),
    ///     whether that content contains a backslash escape, the value's range and the value's kind. An error it
    ///     throws stops the scan and is rethrown.
    /// - Throws: ``JSONError`` if the document is not exactly one valid JSON object, or whatever `body` throws.
    package static func scanObject(
        _ bytes: UnsafeRawBufferPointer,
        _ body: (_ key: Range<Int>, _ keyHasEscapes: Bool, _ value: Range<Int>, _ kind: JSONKind) throws -> Void
    ) throws {
        var scanner = JSONScanner(bytes: bytes, offset: 0, end: bytes.count)
        scanner.skipWhitespace()
        guard scanner.offset < scanner.end else { throw JSONError.unexpectedEnd(at: scanner.offset) }
        guard bytes[scanner.offset] == JSONByte.openBrace else {
            let found = JSONError.describe(bytes[scanner.offset])
            throw JSONError("expected an object but found \(found)", at: scanner.offset)
        }
        scanner.offset += 1
        scanner.skipWhitespace()
        if scanner.offset < scanner.end && bytes[scanner.offset] == JSONByte.closeBrace {
            scanner.offset += 1
        } else {
            while true {
                let (key, keyHasEscapes) = try scanner.scanKey()
                // The envelope itself is one level, so members may nest one level less.
                let value = try scanner.scanValue(maximumDepth: maximumDepth - 1)
                try body(key, keyHasEscapes, value.range, value.kind)
                scanner.skipWhitespace()
                guard scanner.offset < scanner.end else { throw JSONError.unexpectedEnd(at: scanner.offset) }
                let byte = bytes[scanner.offset]
                scanner.offset += 1
                if byte == JSONByte.comma {
                    scanner.skipWhitespace()
                } else if byte == JSONByte.closeBrace {
                    break
                } else {
                    throw JSONError.unexpected(byte, at: scanner.offset - 1)
                }
            }
        }
        try scanner.expectEndOfInput()
    }

    /// Decodes a string literal into a Swift `String`.
    ///
    /// Handles every escape, including `\uXXXX` surrogate pairs; a lone surrogate is an error because it cannot
    /// be represented in a Swift `String`. Content without escapes is copied directly.
    ///
    /// - Parameters:
    ///   - bytes: The buffer holding the literal.
    ///   - range: The literal's range, including both quotes, as reported by ``scanValue(in:from:)``; it must lie
    ///     within `bytes`.
    /// - Returns: The decoded string.
    /// - Throws: ``JSONError`` if `range` does not hold exactly one valid string literal.
    package static func decodeString(in bytes: UnsafeRawBufferPointer, range: Range<Int>) throws -> String {
        var scanner = JSONScanner(bytes: bytes, offset: range.lowerBound, end: range.upperBound)
        guard scanner.offset < scanner.end else { throw JSONError.unexpectedEnd(at: scanner.offset) }
        guard bytes[scanner.offset] == JSONByte.quote else {
            let found = JSONError.describe(bytes[scanner.offset])
            throw JSONError("expected a string but found \(found)", at: scanner.offset)
        }
        let hasEscapes = try scanner.scanString()
        guard scanner.offset == range.upperBound else {
            throw JSONError.unexpected(bytes[scanner.offset], at: scanner.offset)
        }
        return scanner.makeString(content: (range.lowerBound + 1)..<(range.upperBound - 1), hasEscapes: hasEscapes)
    }

    /// Parses the value occupying a range into a ``JSONValue``.
    ///
    /// Whitespace around the value inside `range` is allowed; anything else is an error. Duplicate object keys
    /// keep the last value. Integers that fit `Int64` become ``JSONValue/integer(_:)``; every other number
    /// becomes ``JSONValue/double(_:)``.
    ///
    /// - Parameters:
    ///   - bytes: The buffer holding the value.
    ///   - range: The value's range, for example as reported by ``scanValue(in:from:)``; it must lie within
    ///     `bytes`.
    /// - Returns: The parsed value.
    /// - Throws: ``JSONError`` if `range` does not hold exactly one valid JSON value.
    package static func parseValue(in bytes: UnsafeRawBufferPointer, range: Range<Int>) throws -> JSONValue {
        var scanner = JSONScanner(bytes: bytes, offset: range.lowerBound, end: range.upperBound)
        scanner.skipWhitespace()
        var scratch = ParseScratch()
        let value = try scanner.parseValue(depth: 0, scratch: &scratch)
        try scanner.expectEndOfInput()
        return value
    }

    // MARK: - Structure

    @inline(__always)
    private mutating func skipWhitespace() {
        while offset < end {
            switch bytes[offset] {
            case JSONByte.space, JSONByte.lineFeed, JSONByte.carriageReturn, JSONByte.tab:
                offset += 1
            default:
                return
            }
        }
    }

    /// Requires that only whitespace remains.
    private mutating func expectEndOfInput() throws {
        skipWhitespace()
        if offset < end {
            throw JSONError("unexpected \(JSONError.describe(bytes[offset])) after the value", at: offset)
        }
    }

    /// Scans an object key, the colon and the whitespace around it, leaving `offset` at the member's value.
    private mutating func scanKey() throws -> (content: Range<Int>, hasEscapes: Bool) {
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        guard bytes[offset] == JSONByte.quote else {
            throw JSONError("expected a string key but found \(JSONError.describe(bytes[offset]))", at: offset)
        }
        let opening = offset
        let hasEscapes = try scanString()
        let content = (opening + 1)..<(offset - 1)
        skipWhitespace()
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        guard bytes[offset] == JSONByte.colon else {
            throw JSONError("expected ':' but found \(JSONError.describe(bytes[offset]))", at: offset)
        }
        offset += 1
        skipWhitespace()
        return (content, hasEscapes)
    }

    /// Which kind of value starts with `byte`, or `nil` if none does.
    @inline(__always)
    private static func kind(startingWith byte: UInt8) -> JSONKind? {
        switch byte {
        case JSONByte.openBrace: .object
        case JSONByte.openBracket: .array
        case JSONByte.quote: .string
        case JSONByte.minus, JSONByte.zero...JSONByte.nine: .number
        case JSONByte.lowerT, JSONByte.lowerF: .bool
        case JSONByte.lowerN: .null
        default: nil
        }
    }

    /// Validates one value starting exactly at `offset`, iteratively so that deep input costs no stack.
    private mutating func scanValue(maximumDepth: Int) throws -> (range: Range<Int>, kind: JSONKind) {
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        let start = offset
        guard let kind = Self.kind(startingWith: bytes[start]) else {
            throw JSONError.unexpected(bytes[start], at: start)
        }
        var nesting = NestingStack()
        nextValue: while true {
            // A value must start at `offset` here.
            guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
            let byte = bytes[offset]
            switch byte {
            case JSONByte.openBrace:
                guard nesting.depth < maximumDepth else { throw JSONError.tooDeep(at: offset) }
                nesting.push(isObject: true)
                offset += 1
                skipWhitespace()
                if offset < end && bytes[offset] == JSONByte.closeBrace {
                    offset += 1
                    nesting.pop()
                } else {
                    _ = try scanKey()
                    continue nextValue
                }
            case JSONByte.openBracket:
                guard nesting.depth < maximumDepth else { throw JSONError.tooDeep(at: offset) }
                nesting.push(isObject: false)
                offset += 1
                skipWhitespace()
                if offset < end && bytes[offset] == JSONByte.closeBracket {
                    offset += 1
                    nesting.pop()
                } else {
                    continue nextValue
                }
            case JSONByte.quote:
                _ = try scanString()
            case JSONByte.minus, JSONByte.zero...JSONByte.nine:
                _ = try scanNumber()
            case JSONByte.lowerT:
                try scanLiteral("true")
            case JSONByte.lowerF:
                try scanLiteral("false")
            case JSONByte.lowerN:
                try scanLiteral("null")
            default:
                throw JSONError.unexpected(byte, at: offset)
            }
            // A value just ended: close containers until one expects another element.
            while !nesting.isEmpty {
                skipWhitespace()
                guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
                let byte = bytes[offset]
                let inObject = nesting.topIsObject
                if byte == JSONByte.comma {
                    offset += 1
                    skipWhitespace()
                    if inObject {
                        _ = try scanKey()
                    }
                    continue nextValue
                }
                guard byte == (inObject ? JSONByte.closeBrace : JSONByte.closeBracket) else {
                    let expected = inObject ? "',' or '}'" : "',' or ']'"
                    throw JSONError("expected \(expected) but found \(JSONError.describe(byte))", at: offset)
                }
                offset += 1
                nesting.pop()
            }
            return (start..<offset, kind)
        }
    }

    /// Builds a value starting exactly at `offset`; recursion is bounded by ``maximumDepth``.
    ///
    /// Members and elements are collected on `scratch` and copied into a container of exactly the right size when
    /// it closes, which avoids growing (and for objects, rehashing) every container as it fills.
    private mutating func parseValue(depth: Int, scratch: inout ParseScratch) throws -> JSONValue {
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        let start = offset
        let byte = bytes[start]
        switch byte {
        case JSONByte.openBrace:
            guard depth < Self.maximumDepth else { throw JSONError.tooDeep(at: start) }
            offset += 1
            skipWhitespace()
            if offset < end && bytes[offset] == JSONByte.closeBrace {
                offset += 1
                return .object([:])
            }
            let base = scratch.members.count
            while true {
                let (key, hasEscapes) = try scanKey()
                let name = makeString(content: key, hasEscapes: hasEscapes)
                let value = try parseValue(depth: depth + 1, scratch: &scratch)
                scratch.push(member: name, value)
                skipWhitespace()
                guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
                let next = bytes[offset]
                if next == JSONByte.comma {
                    offset += 1
                    skipWhitespace()
                } else if next == JSONByte.closeBrace {
                    offset += 1
                    return .object(scratch.popMembers(from: base))
                } else {
                    throw JSONError("expected ',' or '}' but found \(JSONError.describe(next))", at: offset)
                }
            }
        case JSONByte.openBracket:
            guard depth < Self.maximumDepth else { throw JSONError.tooDeep(at: start) }
            offset += 1
            skipWhitespace()
            if offset < end && bytes[offset] == JSONByte.closeBracket {
                offset += 1
                return .array([])
            }
            let base = scratch.elements.count
            while true {
                scratch.push(element: try parseValue(depth: depth + 1, scratch: &scratch))
                skipWhitespace()
                guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
                let next = bytes[offset]
                if next == JSONByte.comma {
                    offset += 1
                    skipWhitespace()
                } else if next == JSONByte.closeBracket {
                    offset += 1
                    return .array(scratch.popElements(from: base))
                } else {
                    throw JSONError("expected ',' or ']' but found \(JSONError.describe(next))", at: offset)
                }
            }
        case JSONByte.quote:
            let hasEscapes = try scanString()
            return .string(makeString(content: (start + 1)..<(offset - 1), hasEscapes: hasEscapes))
        case JSONByte.minus, JSONByte.zero...JSONByte.nine:
            let isInteger = try scanNumber()
            return makeNumber(start..<offset, isInteger: isInteger)
        case JSONByte.lowerT:
            try scanLiteral("true")
            return .bool(true)
        case JSONByte.lowerF:
            try scanLiteral("false")
            return .bool(false)
        case JSONByte.lowerN:
            try scanLiteral("null")
            return .null
        default:
            throw JSONError.unexpected(byte, at: start)
        }
    }

    // MARK: - Scalars

    /// Matches a literal exactly; what follows it is the caller's business.
    private mutating func scanLiteral(_ literal: StaticString) throws {
        let expected = literal.utf8Start
        for index in 0..<literal.utf8CodeUnitCount {
            guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
            guard bytes[offset] == expected[index] else { throw JSONError.unexpected(bytes[offset], at: offset) }
            offset += 1
        }
    }

    /// Validates a number per RFC 8259 and reports whether it had neither fraction nor exponent.
    private mutating func scanNumber() throws -> Bool {
        if bytes[offset] == JSONByte.minus {
            offset += 1
        }
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        let first = bytes[offset]
        if first == JSONByte.zero {
            offset += 1
            if offset < end && Self.isDigit(bytes[offset]) {
                throw JSONError("leading zeros are not allowed in numbers", at: offset - 1)
            }
        } else if Self.isDigit(first) {
            offset += 1
            skipDigits()
        } else {
            throw JSONError("expected a digit but found \(JSONError.describe(first))", at: offset)
        }
        var isInteger = true
        if offset < end && bytes[offset] == JSONByte.dot {
            isInteger = false
            offset += 1
            try requireDigit()
            skipDigits()
        }
        if offset < end && (bytes[offset] == JSONByte.lowerE || bytes[offset] == JSONByte.upperE) {
            isInteger = false
            offset += 1
            if offset < end && (bytes[offset] == JSONByte.plus || bytes[offset] == JSONByte.minus) {
                offset += 1
            }
            try requireDigit()
            skipDigits()
        }
        return isInteger
    }

    @inline(__always)
    private static func isDigit(_ byte: UInt8) -> Bool {
        byte &- JSONByte.zero < 10
    }

    @inline(__always)
    private mutating func skipDigits() {
        while offset < end && Self.isDigit(bytes[offset]) {
            offset += 1
        }
    }

    private func requireDigit() throws {
        guard offset < end else { throw JSONError.unexpectedEnd(at: offset) }
        guard Self.isDigit(bytes[offset]) else {
            throw JSONError("expected a digit but found \(JSONError.describe(bytes[offset]))", at: offset)
        }
    }

    /// Converts a validated number; integers that overflow `Int64` fall back to `Double` like in JavaScript.
    private func makeNumber(_ range: Range<Int>, isInteger: Bool) -> JSONValue {
        if isInteger {
            var index = range.lowerBound
            let negative = bytes[index] == JSONByte.minus
            if negative {
                index += 1
            }
            var value: Int64 = 0
            var overflow = false
            while index < range.upperBound {
                let digit = Int64(bytes[index] &- JSONByte.zero)
                let (scaled, overflowed) = value.multipliedReportingOverflow(by: 10)
                // Accumulating negatively for negative numbers lets Int64.min parse.
                let (next, overflowedAgain) =
                    negative ? scaled.subtractingReportingOverflow(digit) : scaled.addingReportingOverflow(digit)
                if overflowed || overflowedAgain {
                    overflow = true
                    break
                }
                value = next
                index += 1
            }
            if !overflow {
                return .integer(value)
            }
        }
        // The grammar was checked, so the stdlib's parser (correctly rounded) always succeeds; values beyond
        // Double's range become infinity.
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        return .double(Double(text) ?? .nan)
    }

    // MARK: - Strings

    /// Validates a string literal starting at the opening quote at `offset`, leaving `offset` after the closing
    /// quote, and reports whether it contained escapes.
    private mutating func scanString() throws -> Bool {
        var index = offset + 1
        var hasEscapes = false
        while true {
            // Skip plain ASCII eight bytes at a time; most string content needs no per-byte attention.
            while index &+ 8 <= end {
                // Little-endian order puts the first byte in the lowest bits on every platform.
                let word = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self))
                let attention = Self.attentionMask(word)
                if attention != 0 {
                    // Jump straight to the first byte needing attention.
                    index &+= attention.trailingZeroBitCount &>> 3
                    break
                }
                index &+= 8
            }
            guard index < end else { throw JSONError("unterminated string", at: index) }
            let byte = bytes[index]
            if byte == JSONByte.quote {
                offset = index + 1
                return hasEscapes
            } else if byte == JSONByte.backslash {
                hasEscapes = true
                index = try scanEscape(at: index)
            } else if byte < 0x20 {
                throw JSONError("unescaped control character 0x\(JSONError.hex2(byte)) in string", at: index)
            } else if byte < 0x80 {
                index += 1
            } else {
                index = try scanUTF8Sequence(at: index)
            }
        }
    }

    /// Flags, in the high bit of each byte, the bytes of `word` that are a quote, a backslash, a control character
    /// or non-ASCII; zero when there are none.
    ///
    /// Uses the classic "has a zero byte" bit trick. Borrows can flag extra bytes above a true match, but never
    /// below it, so both "any flagged" and "lowest flagged byte" are exact.
    @inline(__always)
    private static func attentionMask(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highBits: UInt64 = 0x8080_8080_8080_8080
        let quotes = word ^ (ones &* UInt64(JSONByte.quote))
        let backslashes = word ^ (ones &* UInt64(JSONByte.backslash))
        let hasQuote = (quotes &- ones) & ~quotes
        let hasBackslash = (backslashes &- ones) & ~backslashes
        let hasControl = (word &- ones &* 0x20) & ~word
        return (hasQuote | hasBackslash | hasControl | word) & highBits
    }

    /// Validates the escape whose backslash is at `index` and returns the index after it.
    private func scanEscape(at index: Int) throws -> Int {
        let letter = index + 1
        guard letter < end else { throw JSONError("unterminated string", at: letter) }
        switch bytes[letter] {
        case JSONByte.quote, JSONByte.backslash, JSONByte.slash, JSONByte.lowerB, JSONByte.lowerF, JSONByte.lowerN,
            JSONByte.lowerR, JSONByte.lowerT:
            return letter + 1
        case JSONByte.lowerU:
            let unit = try hexQuad(at: letter + 1)
            var next = letter + 5
            if unit >= 0xD800 && unit < 0xDC00 {
                // A high surrogate is only meaningful with a low surrogate escape right after it.
                guard next + 1 < end && bytes[next] == JSONByte.backslash && bytes[next + 1] == JSONByte.lowerU,
                    case let low = try hexQuad(at: next + 2), low >= 0xDC00 && low < 0xE000
                else {
                    throw JSONError("unpaired surrogate in \\u escape", at: index)
                }
                next += 6
            } else if unit >= 0xDC00 && unit < 0xE000 {
                throw JSONError("unpaired surrogate in \\u escape", at: index)
            }
            return next
        default:
            throw JSONError("invalid escape sequence '\\' followed by \(JSONError.describe(bytes[letter]))", at: index)
        }
    }

    /// Reads the four hex digits of a `\u` escape.
    private func hexQuad(at index: Int) throws -> UInt32 {
        var value: UInt32 = 0
        for position in index..<(index + 4) {
            guard position < end else { throw JSONError("unterminated string", at: position) }
            guard let digit = Self.hexValue(bytes[position]) else {
                throw JSONError("invalid hex digit \(JSONError.describe(bytes[position])) in \\u escape", at: position)
            }
            value = value << 4 | digit
        }
        return value
    }

    @inline(__always)
    private static func hexValue(_ byte: UInt8) -> UInt32? {
        switch byte {
        case 0x30...0x39: UInt32(byte - 0x30)
        case 0x41...0x46: UInt32(byte - 0x41 + 10)
        case 0x61...0x66: UInt32(byte - 0x61 + 10)
        default: nil
        }
    }

    /// Validates one multi-byte UTF-8 sequence (Unicode table 3-7) and returns the index after it.
    ///
    /// Overlong forms, UTF-8-encoded surrogates and code points above U+10FFFF are rejected here, so strings
    /// never need repairing later.
    private func scanUTF8Sequence(at index: Int) throws -> Int {
        let lead = bytes[index]
        let length: Int
        var lowest: UInt8 = 0x80
        var highest: UInt8 = 0xBF
        switch lead {
        case 0xC2...0xDF:
            length = 2
        case 0xE0:
            length = 3
            lowest = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF:
            length = 3
        case 0xED:
            length = 3
            highest = 0x9F
        case 0xF0:
            length = 4
            lowest = 0x90
        case 0xF1...0xF3:
            length = 4
        case 0xF4:
            length = 4
            highest = 0x8F
        default:
            throw JSONError("invalid UTF-8 byte 0x\(JSONError.hex2(lead)) in string", at: index)
        }
        for position in (index + 1)..<(index + length) {
            guard position < end else { throw JSONError("truncated UTF-8 sequence in string", at: index) }
            let byte = bytes[position]
            let valid = position == index + 1 ? (byte >= lowest && byte <= highest) : (byte & 0xC0 == 0x80)
            guard valid else { throw JSONError("invalid UTF-8 sequence in string", at: index) }
        }
        return index + length
    }

    /// Builds a `String` from validated string content (between the quotes).
    private func makeString(content: Range<Int>, hasEscapes: Bool) -> String {
        let raw = UnsafeRawBufferPointer(rebasing: bytes[content])
        guard hasEscapes else {
            return String(decoding: raw, as: UTF8.self)
        }
        // Every escape decodes to no more bytes than it occupies, so the content length is enough capacity.
        return String(unsafeUninitializedCapacity: raw.count) { out in
            var written = 0
            var index = 0
            while index < raw.count {
                let byte = raw[index]
                guard byte == JSONByte.backslash else {
                    out[written] = byte
                    written += 1
                    index += 1
                    continue
                }
                let letter = raw[index + 1]
                index += 2
                switch letter {
                case JSONByte.lowerB: out[written] = 0x08
                case JSONByte.lowerF: out[written] = 0x0C
                case JSONByte.lowerN: out[written] = 0x0A
                case JSONByte.lowerR: out[written] = 0x0D
                case JSONByte.lowerT: out[written] = 0x09
                case JSONByte.lowerU:
                    var scalar = Self.validatedHexQuad(raw, at: index)
                    index += 4
                    if scalar >= 0xD800 && scalar < 0xDC00 {
                        let low = Self.validatedHexQuad(raw, at: index + 2)
                        index += 6
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                    }
                    written += Self.encodeUTF8(scalar, into: out, at: written)
                    continue
                default: out[written] = letter  // \" \\ \/
                }
                written += 1
            }
            return written
        }
    }

    private static func validatedHexQuad(_ raw: UnsafeRawBufferPointer, at index: Int) -> UInt32 {
        var value: UInt32 = 0
        for position in index..<(index + 4) {
            value = value << 4 | (hexValue(raw[position]) ?? 0)
        }
        return value
    }

    /// Writes a scalar as UTF-8 and returns how many bytes were written.
    private static func encodeUTF8(
        _ scalar: UInt32,
        into out: UnsafeMutableBufferPointer<UInt8>,
        at index: Int
    ) -> Int {
        switch scalar {
        case ..<0x80:
            out[index] = UInt8(scalar)
            return 1
        case ..<0x800:
            out[index] = UInt8(0xC0 | scalar >> 6)
            out[index + 1] = UInt8(0x80 | scalar & 0x3F)
            return 2
        case ..<0x10000:
            out[index] = UInt8(0xE0 | scalar >> 12)
            out[index + 1] = UInt8(0x80 | scalar >> 6 & 0x3F)
            out[index + 2] = UInt8(0x80 | scalar & 0x3F)
            return 3
        default:
            out[index] = UInt8(0xF0 | scalar >> 18)
            out[index + 1] = UInt8(0x80 | scalar >> 12 & 0x3F)
            out[index + 2] = UInt8(0x80 | scalar >> 6 & 0x3F)
            out[index + 3] = UInt8(0x80 | scalar & 0x3F)
            return 4
        }
    }
}

extension JSONError {
    /// Nesting beyond ``JSONScanner/maximumDepth``.
    static func tooDeep(at offset: Int) -> JSONError {
        JSONError("nesting deeper than \(JSONScanner.maximumDepth) levels", at: offset)
    }
}

/// Members and elements of the containers still open during ``JSONScanner/parseValue(in:range:)``, as stacks.
private struct ParseScratch {
    private(set) var members: [(String, JSONValue)] = []
    private(set) var elements: [JSONValue] = []

    /// Typical payloads fit in this many entries, so the stacks allocate once instead of growing step by step.
    private static let initialCapacity = 16

    mutating func push(member name: String, _ value: JSONValue) {
        if members.capacity == 0 {
            members.reserveCapacity(Self.initialCapacity)
        }
        members.append((name, value))
    }

    mutating func push(element value: JSONValue) {
        if elements.capacity == 0 {
            elements.reserveCapacity(Self.initialCapacity)
        }
        elements.append(value)
    }

    /// Removes the members collected since `base` and returns them as a dictionary; the last duplicate wins,
    /// matching JavaScript's JSON.parse, which Courier's peers use.
    mutating func popMembers(from base: Int) -> [String: JSONValue] {
        var dictionary = [String: JSONValue](minimumCapacity: members.count - base)
        for index in base..<members.count {
            dictionary[members[index].0] = members[index].1
        }
        members.removeSubrange(base...)
        return dictionary
    }

    /// Removes the elements collected since `base` and returns them as an array.
    mutating func popElements(from base: Int) -> [JSONValue] {
        let array = Array(elements[base...])
        elements.removeSubrange(base...)
        return array
    }
}

/// Which open containers are objects, one bit per level, in fixed inline storage so scanning never allocates.
private struct NestingStack {
    // 8 × 64 bits = JSONScanner.maximumDepth levels.
    private var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
    private(set) var depth = 0

    var isEmpty: Bool { depth == 0 }

    var topIsObject: Bool {
        let level = depth - 1
        let word = withUnsafeBytes(of: words) { $0.load(fromByteOffset: (level >> 6) << 3, as: UInt64.self) }
        return word >> UInt64(level & 63) & 1 == 1
    }

    /// Callers check the depth limit first; the limit never exceeds the storage.
    mutating func push(isObject: Bool) {
        precondition(depth < JSONScanner.maximumDepth, "nesting stack overflow")
        let level = depth
        withUnsafeMutableBytes(of: &words) { raw in
            let byteOffset = (level >> 6) << 3
            let mask = UInt64(1) << UInt64(level & 63)
            let word = raw.load(fromByteOffset: byteOffset, as: UInt64.self)
            raw.storeBytes(of: isObject ? word | mask : word & ~mask, toByteOffset: byteOffset, as: UInt64.self)
        }
        depth += 1
    }

    mutating func pop() {
        depth -= 1
    }
}
