//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A Foundation-free JSON → `Decodable` decoder that reads values straight from the input bytes.
///
/// Its semantics are those of Foundation's `JSONDecoder` with default strategies: numbers decode into any integer
/// type only when they are integral and in range (`1.0` and `1e2` are accepted, as Foundation accepts them),
/// floating-point types accept integer literals, `Bool` accepts only `true` and `false`, a repeated object key keeps
/// its first value, and errors are the same `DecodingError` cases with the same coding paths. Like Foundation, a
/// number that does not fit its type throws `dataCorrupted` at the top-level path (Foundation reports these as
/// malformed JSON); the description names the real location.
///
/// The whole input is validated up front with ``JSONScanner``, strictly (RFC 8259, UTF-8 only), and invalid input
/// throws `dataCorrupted` at the top level with the ``JSONError`` attached and its explanation in the description.
/// Foundation is more lenient — it accepts a trailing comma in an array, a byte order mark and UTF-16/32, and checks
/// number syntax and string escapes only in the values it decodes, so some malformed documents decode or fail with a
/// type mismatch there; ``PayloadCoder`` hands malformed documents to Foundation for that reason. Containers then
/// find their members by brackets and quotes alone and parse only what is asked for; no tree is built.
/// ``JSONValue``s nested in a value are parsed with ``JSONScanner/parseValue(in:range:)``, so numbers keep the
/// integer/double distinction of the text (Foundation's path through `JSONValue.init(from:)` turns `1.0` into an
/// integer).
///
/// Types that Foundation decodes specially (`Data`, `URL`, `Decimal`) make it throw
/// ``CourierJSONCodingError/unsupported(_:)`` so the caller can use Foundation instead (see ``PayloadCoder``).
package struct CourierJSONDecoder: Sendable {
    /// Creates a decoder; it has no options because it implements only Foundation's default strategies.
    package init() {}

    /// Decodes a value from the readable bytes of a JSON document.
    ///
    /// Decoders and containers read the buffer's bytes in place. A value may keep the decoder it is given and read
    /// from it after this call returned (lazy decoding does, and Foundation allows it by keeping its own copy of
    /// the input), so the decoder keeps `buffer` alive as long as any of them: a kept decoder reads the bytes it
    /// was given, not memory freed and reused since.
    ///
    /// - Parameters:
    ///   - type: The type to decode; any `Decodable`, including scalars (fragments).
    ///   - buffer: The UTF-8 document; it must hold exactly one value, optionally surrounded by whitespace, and be
    ///     smaller than 4 GiB.
    /// - Returns: The decoded value.
    /// - Throws: `DecodingError` as Foundation's decoder would throw it, whatever the type's own `init(from:)`
    ///   throws, or ``CourierJSONCodingError/unsupported(_:)`` when only Foundation can decode the type.
    package func decode<T: Decodable>(_ type: T.Type, from buffer: ByteBuffer) throws -> T {
        // The pointer stays valid while the state holds `buffer`: a copy of the buffer shares its storage, so a
        // later write through another copy copies the storage first instead of moving or freeing it.
        try buffer.withUnsafeReadableBytes { try decode(type, from: $0, keepingAlive: buffer) }
    }

    /// Decodes a value from a JSON document in memory that the caller keeps alive and unchanged for as long as the
    /// value may use a decoder it kept (the `ByteBuffer` variant keeps its buffer alive itself); otherwise as that
    /// variant.
    package func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        try decode(type, from: bytes, keepingAlive: nil)
    }

    private func decode<T: Decodable>(
        _ type: T.Type,
        from bytes: UnsafeRawBufferPointer,
        keepingAlive owner: ByteBuffer?
    ) throws -> T {
        // Offsets are stored as 32 bits to keep decoders small enough to pass without allocating.
        guard bytes.count < Int(UInt32.max) else {
            throw CourierJSONCodingError.unsupported("documents of 4 GiB or more")
        }
        let value: Range<Int>
        do {
            value = try JSONScanner.scanValue(in: bytes, from: 0).range
            let end = DecodingState.skipWhitespace(in: bytes, from: value.upperBound)
            if end < bytes.count {
                throw JSONError("unexpected \(JSONError.describe(bytes[end])) after the value", at: end)
            }
        } catch let error as JSONError {
            throw DecodingState.malformed(error)
        }
        let state = DecodingState(bytes: bytes, owner: owner)
        let result = try state.decode(type, JSONSlice(value), parent: nil, step: nil)
        // The type's own code may have caught our error and carried on, which Foundation would not have needed.
        if let failure = state.failure { throw failure }
        return result
    }
}

// MARK: - Values

/// Where a value lies in the input: 32-bit bounds so that a decoder (state, path, slice) fits in three words and
/// passing it as `any Decoder` does not allocate.
private struct JSONSlice {
    /// The first byte of the value.
    let start: UInt32
    /// One past its last byte.
    let end: UInt32

    /// The slice of `range`, which the caller has checked is below 4 GiB.
    init(_ range: Range<Int>) {
        start = UInt32(truncatingIfNeeded: range.lowerBound)
        end = UInt32(truncatingIfNeeded: range.upperBound)
    }

    private init(start: UInt32, end: UInt32) {
        self.start = start
        self.end = end
    }

    /// A `null` that is not in the input: what `superDecoder()` decodes when the key is missing, as in Foundation.
    static let absentNull = JSONSlice(start: .max, end: .max)

    /// Whether this is ``absentNull``.
    var isAbsentNull: Bool { start == .max }

    /// The bounds as a range of offsets.
    var range: Range<Int> { Int(start)..<Int(end) }
}

/// A node of a coding path, shared by the decoders and containers beneath it; built only for values decoded
/// through their own `init(from:)`, never for scalars.
private final class PathNode {
    /// The path to the enclosing value; nil at the top level.
    let parent: PathNode?
    /// The last step.
    let step: JSONPathStep

    /// Makes the node one `step` below `parent`.
    init(parent: PathNode?, step: JSONPathStep) {
        self.parent = parent
        self.step = step
    }

    /// The whole path, outermost key first.
    var codingPath: [any CodingKey] {
        var path: [any CodingKey] = []
        var node: PathNode? = self
        while let current = node {
            path.append(current.step.codingKey)
            node = current.parent
        }
        path.reverse()
        return path
    }
}

/// The coding path of the value reached from `parent` by `step` (the value at `parent` itself when `step` is nil).
private func codingPath(_ parent: PathNode?, _ step: JSONPathStep?) -> [any CodingKey] {
    var path = parent?.codingPath ?? []
    if let step {
        path.append(step.codingKey)
    }
    return path
}

/// One member of an object, located by a keyed container.
private struct Member {
    /// The key's content, between the quotes.
    let keyStart: UInt32
    /// One past the key's last content byte.
    let keyEnd: UInt32
    /// Where the member's value lies.
    let value: JSONSlice
    /// Whether the key contains a backslash escape, so that its bytes are not its text.
    let keyHasEscapes: Bool
}

// MARK: - State

/// Everything one `decode` call shares.
private final class DecodingState {
    /// The document; valid as long as `owner` is held, or for the `decode` call that made this state when it is nil.
    let bytes: UnsafeRawBufferPointer
    /// The buffer `bytes` points into, held so that decoders and containers a value kept can still read them.
    private let owner: ByteBuffer?
    // Confined to one `decode` call on one thread, with no overlapping accesses: the runtime's exclusivity checks
    // would only cost time.
    /// Set when Foundation is needed; thrown again at the end even if the `Decodable` code caught it.
    @exclusivity(unchecked) var failure: CourierJSONCodingError?

    /// Objects with more members than this are looked up through a dictionary instead of a linear scan.
    static let linearMemberLimit = 12

    init(bytes: UnsafeRawBufferPointer, owner: ByteBuffer?) {
        self.bytes = bytes
        self.owner = owner
    }

    /// The first offset at or after `offset` that is not JSON whitespace.
    static func skipWhitespace(in bytes: UnsafeRawBufferPointer, from offset: Int) -> Int {
        var offset = offset
        while offset < bytes.count {
            switch bytes[offset] {
            case JSONByte.space, JSONByte.lineFeed, JSONByte.carriageReturn, JSONByte.tab: offset += 1
            default: return offset
            }
        }
        return offset
    }

    /// The first offset at or after `offset` that is not JSON whitespace.
    @inline(__always)
    func skipWhitespace(from offset: Int) -> Int {
        Self.skipWhitespace(in: bytes, from: offset)
    }

    /// Locates the value starting at `offset`, after any whitespace.
    ///
    /// The whole document was validated up front, so finding where a value ends needs only its brackets and string
    /// quotes. That is several times cheaper than having ``JSONScanner`` validate each value again every time a
    /// container walks over it, and containers walk over every member of every object they decode.
    func locate(from offset: Int) -> JSONSlice {
        let start = skipWhitespace(from: offset)
        var index = start
        var depth = 0
        repeat {
            switch bytes[index] {
            case JSONByte.quote:
                index = stringEnd(from: index)
            case JSONByte.openBrace, JSONByte.openBracket:
                depth += 1
                index += 1
            case JSONByte.closeBrace, JSONByte.closeBracket:
                depth -= 1
                index += 1
            default:
                index += 1
                if depth == 0 {
                    // A number or literal on its own ends where something that cannot continue it starts.
                    while index < bytes.count && !Self.endsScalar(bytes[index]) {
                        index += 1
                    }
                }
            }
        } while depth > 0
        return JSONSlice(start..<index)
    }

    /// The offset after the closing quote of the (valid) string literal whose opening quote is at `quote`.
    @inline(__always)
    private func stringEnd(from quote: Int) -> Int {
        var index = quote + 1
        while true {
            let byte = bytes[index]
            if byte == JSONByte.quote {
                return index + 1
            }
            // An escape's second byte may be a quote; `\uXXXX`'s hex digits need no special care.
            index += byte == JSONByte.backslash ? 2 : 1
        }
    }

    @inline(__always)
    private static func endsScalar(_ byte: UInt8) -> Bool {
        switch byte {
        case JSONByte.comma, JSONByte.closeBrace, JSONByte.closeBracket, JSONByte.colon, JSONByte.space,
            JSONByte.lineFeed, JSONByte.carriageReturn, JSONByte.tab:
            true
        default: false
        }
    }

    /// Foundation's error for a document that is not JSON, with the parser's explanation added and attached.
    static func malformed(_ error: JSONError) -> DecodingError {
        DecodingError.dataCorrupted(
            DecodingError.Context(
                codingPath: [],
                debugDescription: "The given data was not valid JSON: \(error.message).",
                underlyingError: error
            )
        )
    }

    /// The kind of a located value, from its first byte.
    func kind(of value: JSONSlice) -> JSONKind {
        if value.isAbsentNull { return .null }
        switch bytes[Int(value.start)] {
        case JSONByte.openBrace: return .object
        case JSONByte.openBracket: return .array
        case JSONByte.quote: return .string
        case JSONByte.lowerT, JSONByte.lowerF: return .bool
        case JSONByte.lowerN: return .null
        default: return .number
        }
    }

    /// Records that `type` needs Foundation and returns the error to throw.
    func fail(_ type: Any.Type) -> CourierJSONCodingError {
        let error = FoundationSpecialTypes.unsupported(type)
        if failure == nil {
            failure = error
        }
        return error
    }

    // MARK: Errors, worded as Foundation words them

    /// `typeMismatch` for a value of the wrong kind.
    func typeMismatch(_ type: Any.Type, _ value: JSONSlice, _ path: [any CodingKey]) -> DecodingError {
        let found =
            switch kind(of: value) {
            case .string: "a string"
            case .number: "number"
            case .bool: "bool"
            case .null: "null"
            case .object: "a dictionary"
            case .array: "an array"
            }
        return DecodingError.typeMismatch(
            type,
            DecodingError.Context(
                codingPath: path,
                debugDescription: "Expected to decode \(type) but found \(found) instead."
            )
        )
    }

    /// `valueNotFound` for a `null` where a value is required.
    func valueNotFound(_ type: Any.Type, _ path: [any CodingKey]) -> DecodingError {
        DecodingError.valueNotFound(
            type,
            DecodingError.Context(
                codingPath: path,
                debugDescription: "Cannot get value of type \(type) -- found null value instead"
            )
        )
    }

    /// Foundation reports numbers that do not fit their type as malformed JSON at the top level; so do we, for
    /// identical behaviour, but the description says where the number was.
    func numberDoesNotFit(_ type: Any.Type, _ value: JSONSlice, _ path: [any CodingKey]) -> DecodingError {
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[value.range]), as: UTF8.self)
        let location =
            path.isEmpty ? "" : " at \(path.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined())"
        return DecodingError.dataCorrupted(
            DecodingError.Context(
                codingPath: [],
                debugDescription: "Number \(text)\(location) does not fit in \(type)."
            )
        )
    }

    // MARK: Scalars

    /// Decodes `true` or `false`; `path` is built only for an error.
    func decodeBool(_ value: JSONSlice, _ path: @autoclosure () -> [any CodingKey]) throws -> Bool {
        // Foundation reports null as a type mismatch for Bool, unlike every other scalar.
        switch kind(of: value) {
        case .bool: return bytes[Int(value.start)] == JSONByte.lowerT
        default: throw typeMismatch(Bool.self, value, path())
        }
    }

    /// Decodes a string literal, unescaping it; `path` is built only for an error.
    func decodeString(_ value: JSONSlice, _ path: @autoclosure () -> [any CodingKey]) throws -> String {
        switch kind(of: value) {
        case .string:
            do {
                return try JSONScanner.decodeString(in: bytes, range: value.range)
            } catch {
                throw DecodingError.dataCorrupted(
                    DecodingError.Context(
                        codingPath: path(),
                        debugDescription: "Invalid string.",
                        underlyingError: error
                    )
                )
            }
        case .null: throw valueNotFound(String.self, path())
        default: throw typeMismatch(String.self, value, path())
        }
    }

    /// Decodes a number into an integer type; `path` is built only for an error.
    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    func decodeInteger<T: FixedWidthInteger>(
        _ type: T.Type,
        _ value: JSONSlice,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        switch kind(of: value) {
        case .number:
            if let integer: T = JSONNumberParser.integer(bytes, value.range) {
                return integer
            }
            throw numberDoesNotFit(T.self, value, path())
        case .null: throw valueNotFound(T.self, path())
        default: throw typeMismatch(T.self, value, path())
        }
    }

    /// Decodes a number into a floating-point type; `path` is built only for an error.
    // Inlined so that each floating-point type gets its own specialized, non-generic copy.
    @inline(__always)
    func decodeFloatingPoint<T: BinaryFloatingPoint & LosslessStringConvertible>(
        _ type: T.Type,
        _ value: JSONSlice,
        _ path: @autoclosure () -> [any CodingKey]
    ) throws -> T {
        switch kind(of: value) {
        case .number:
            if let number: T = JSONNumberParser.floatingPoint(bytes, value.range) {
                return number
            }
            throw numberDoesNotFit(T.self, value, path())
        case .null: throw valueNotFound(T.self, path())
        default: throw typeMismatch(T.self, value, path())
        }
    }

    // MARK: Values of any type

    /// Decodes the value reached from `parent` by `step` (or the value at `parent` when `step` is nil). Common
    /// types are decoded directly; others get a decoder, and only then a path node.
    func decode<T: Decodable>(_ type: T.Type, _ value: JSONSlice, parent: PathNode?, step: JSONPathStep?) throws -> T {
        if T.self == Int.self {
            return unsafeBitCast(try decodeInteger(Int.self, value, codingPath(parent, step)), to: T.self)
        } else if T.self == String.self {
            return unsafeBitCast(try decodeString(value, codingPath(parent, step)), to: T.self)
        } else if T.self == Double.self {
            return unsafeBitCast(try decodeFloatingPoint(Double.self, value, codingPath(parent, step)), to: T.self)
        } else if T.self == Bool.self {
            return unsafeBitCast(try decodeBool(value, codingPath(parent, step)), to: T.self)
        } else if T.self == Int64.self {
            return unsafeBitCast(try decodeInteger(Int64.self, value, codingPath(parent, step)), to: T.self)
        } else if T.self == [Int].self {
            return unsafeBitCast(try decodeIntegers(value, parent: parent, step: step), to: T.self)
        } else if T.self == JSONValue.self {
            return unsafeBitCast(try decodeJSONValue(value), to: T.self)
        }
        guard !FoundationSpecialTypes.contains(T.self) else { throw fail(T.self) }
        let path = step.map { PathNode(parent: parent, step: $0) } ?? parent
        return try T(from: DecoderHandle(state: self, path: path, value: value))
    }

    private func decodeJSONValue(_ value: JSONSlice) throws -> JSONValue {
        if value.isAbsentNull { return .null }
        do {
            return try JSONScanner.parseValue(in: bytes, range: value.range)
        } catch let error as JSONError {
            throw Self.malformed(error)
        }
    }

    /// `[Int]` without an unkeyed container, the commonest payload.
    private func decodeIntegers(_ value: JSONSlice, parent: PathNode?, step: JSONPathStep?) throws -> [Int] {
        guard kind(of: value) == .array else {
            throw arrayExpected(value, codingPath(parent, step))
        }
        var result: [Int] = []
        // Every element takes at least two bytes with its comma; the cap keeps huge arrays from over-reserving.
        result.reserveCapacity(min((Int(value.end) - Int(value.start)) / 2, 64))
        var offset = skipWhitespace(from: Int(value.start) + 1)
        while bytes[offset] != JSONByte.closeBracket {
            let element = locate(from: offset)
            result.append(
                try decodeInteger(Int.self, element, codingPath(parent, step) + [JSONIndexKey(result.count)])
            )
            offset = nextElement(after: element)
        }
        return result
    }

    /// The offset of the element after `element`, or of the closing bracket.
    @inline(__always)
    func nextElement(after element: JSONSlice) -> Int {
        var offset = skipWhitespace(from: Int(element.end))
        if bytes[offset] == JSONByte.comma {
            offset = skipWhitespace(from: offset + 1)
        }
        return offset
    }

    // MARK: Containers

    /// Foundation's error for a keyed container over something other than an object.
    func objectExpected(_ value: JSONSlice, _ path: [any CodingKey]) -> DecodingError {
        if kind(of: value) == .null {
            return DecodingError.valueNotFound(
                [String: Any].self,
                DecodingError.Context(
                    codingPath: path,
                    debugDescription: "Cannot get keyed decoding container -- found null value instead"
                )
            )
        }
        return typeMismatch([String: Any].self, value, path)
    }

    /// Foundation's error for an unkeyed container over something other than an array.
    func arrayExpected(_ value: JSONSlice, _ path: [any CodingKey]) -> DecodingError {
        if kind(of: value) == .null {
            return DecodingError.valueNotFound(
                [Any].self,
                DecodingError.Context(
                    codingPath: path,
                    debugDescription: "Cannot get unkeyed decoding container -- found null value instead"
                )
            )
        }
        return typeMismatch([Any].self, value, path)
    }

    /// Locates the members of the object `value` and returns a container over them.
    func keyedContainer<Key: CodingKey>(
        keyedBy type: Key.Type,
        _ value: JSONSlice,
        path: PathNode?
    ) throws -> KeyedDecodingContainer<Key> {
        guard kind(of: value) == .object else { throw objectExpected(value, path?.codingPath ?? []) }
        // Each container owns its table, so memory goes when the container does, however large the document.
        var members: [Member] = []
        var offset = skipWhitespace(from: Int(value.start) + 1)
        if bytes[offset] != JSONByte.closeBrace {
            members.reserveCapacity(8)
            while true {
                let key = locate(from: offset)
                var hasEscapes = false
                for index in (Int(key.start) + 1)..<(Int(key.end) - 1) where bytes[index] == JSONByte.backslash {
                    hasEscapes = true
                    break
                }
                // The colon follows the key, possibly after whitespace; locating skips whitespace before the value.
                offset = skipWhitespace(from: Int(key.end)) + 1
                let member = locate(from: offset)
                members.append(
                    Member(keyStart: key.start + 1, keyEnd: key.end - 1, value: member, keyHasEscapes: hasEscapes)
                )
                offset = skipWhitespace(from: Int(member.end))
                if bytes[offset] == JSONByte.closeBrace {
                    break
                }
                offset = skipWhitespace(from: offset + 1)
            }
        }
        let container = KeyedContainer<Key>(
            state: self,
            path: path,
            members: members,
            index: members.count > Self.linearMemberLimit ? MemberIndex(state: self, members: members) : nil
        )
        return KeyedDecodingContainer(container)
    }

    /// Returns a container that walks the array `value`.
    func unkeyedContainer(_ value: JSONSlice, path: PathNode?) throws -> UnkeyedContainer {
        guard kind(of: value) == .array else { throw arrayExpected(value, path?.codingPath ?? []) }
        return UnkeyedContainer(state: self, path: path, start: Int(value.start))
    }

    /// The text of a member's key.
    func key(of member: Member) -> String {
        let range = Int(member.keyStart)..<Int(member.keyEnd)
        if member.keyHasEscapes {
            // The quotes are part of the literal the scanner decodes; the document is valid, so this cannot fail.
            return (try? JSONScanner.decodeString(in: bytes, range: (range.lowerBound - 1)..<(range.upperBound + 1)))
                ?? ""
        }
        return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    /// Whether a member's key is `key`, comparing bytes unless the member's key has escapes.
    @inline(__always)
    func member(_ member: Member, hasKey key: UnsafeBufferPointer<UInt8>) -> Bool {
        if member.keyHasEscapes {
            return self.key(of: member).utf8.elementsEqual(key)
        }
        let start = Int(member.keyStart)
        let count = Int(member.keyEnd) - start
        guard count == key.count else { return false }
        var index = 0
        while index < count {
            if bytes[start &+ index] != key[index] { return false }
            index &+= 1
        }
        return true
    }
}

// MARK: - Number parsing

/// Converts validated JSON number literals the way Foundation's `JSONDecoder` does.
enum JSONNumberParser {
    /// Converts a literal into an integer type, or returns nil when Foundation would reject it.
    ///
    /// Plain integer literals are parsed exactly. Others (`1.0`, `1e2`) follow Foundation: parsed as a `Double`,
    /// they must be integral and in range; beyond 2^53, where `Double` is not exact, the literal's own integer part
    /// is used, as Foundation's `Decimal` fallback does.
    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    static func integer<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> T? {
        var index = range.lowerBound
        let negative = bytes[index] == JSONByte.minus
        if negative {
            index += 1
        }
        var value: T = 0
        while index < range.upperBound {
            let digit = bytes[index] &- JSONByte.zero
            guard digit < 10 else { return integerFromNonIntegerLiteral(bytes, range) }
            let (scaled, overflow) = value.multipliedReportingOverflow(by: 10)
            // Accumulating negatively for negative numbers lets T.min parse.
            let (next, overflowAgain) =
                negative
                ? scaled.subtractingReportingOverflow(T(digit)) : scaled.addingReportingOverflow(T(digit))
            if overflow || overflowAgain {
                return nil
            }
            value = next
            index += 1
        }
        return value
    }

    private static func integerFromNonIntegerLiteral<T: FixedWidthInteger>(
        _ bytes: UnsafeRawBufferPointer,
        _ range: Range<Int>
    ) -> T? {
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        guard let double = Double(text), let value: T = exactInteger(double) else { return nil }
        if double.magnitude < 0x1p53 {
            return value
        }
        return truncatedInteger(bytes, range)
    }

    /// `T(exactly:)` computed from the bits: the library must not call libm (`trunc`), which is only linked when
    /// Foundation is.
    private static func exactInteger<T: FixedWidthInteger>(_ double: Double) -> T? {
        guard double.isFinite else { return nil }
        if double == 0 {
            return 0
        }
        let exponent = Int(double.exponent)
        // Below 1 nothing is integral but zero; from 2^bitWidth nothing fits.
        guard exponent >= 0 && exponent < T.bitWidth else { return nil }
        let significand = UInt64(1) << 52 | double.significandBitPattern
        let magnitude: T.Magnitude
        if exponent >= 52 {
            magnitude = T.Magnitude(truncatingIfNeeded: significand) << (exponent - 52)
        } else {
            let dropped = 52 - exponent
            guard significand & (UInt64(1) << dropped - 1) == 0 else { return nil }
            magnitude = T.Magnitude(truncatingIfNeeded: significand >> dropped)
        }
        return signed(magnitude, negative: double.sign == .minus)
    }

    /// `magnitude` with a sign, if `T` can hold it.
    private static func signed<T: FixedWidthInteger>(_ magnitude: T.Magnitude, negative: Bool) -> T? {
        guard negative && magnitude != 0 else { return T(exactly: magnitude) }
        guard T.isSigned else { return nil }
        if let value = T(exactly: magnitude) {
            return 0 - value
        }
        return magnitude == T.Magnitude(1) << (T.bitWidth - 1) ? T.min : nil
    }

    /// The integer part of a literal, accumulated in 64 bits like Foundation's `Decimal` conversion.
    private static func truncatedInteger<T: FixedWidthInteger>(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>)
        -> T?
    {
        var index = range.lowerBound
        let negative = bytes[index] == JSONByte.minus
        if negative {
            index += 1
        }
        var digits: [UInt8] = []
        var integerDigits = 0
        var inFraction = false
        while index < range.upperBound {
            let byte = bytes[index]
            if byte == JSONByte.dot {
                inFraction = true
            } else if byte == JSONByte.lowerE || byte == JSONByte.upperE {
                break
            } else {
                digits.append(byte &- JSONByte.zero)
                if !inFraction {
                    integerDigits += 1
                }
            }
            index += 1
        }
        var exponent = 0
        if index < range.upperBound {
            index += 1
            let exponentNegative = bytes[index] == JSONByte.minus
            if bytes[index] == JSONByte.minus || bytes[index] == JSONByte.plus {
                index += 1
            }
            while index < range.upperBound {
                // Clamped: anything this large overflows or vanishes anyway.
                exponent = min(exponent * 10 + Int(bytes[index] &- JSONByte.zero), 100_000)
                index += 1
            }
            if exponentNegative {
                exponent = -exponent
            }
        }
        let wholeDigits = integerDigits + exponent
        var magnitude: UInt64 = 0
        if wholeDigits > 0 {
            for position in 0..<wholeDigits {
                let digit = position < digits.count ? UInt64(digits[position]) : 0
                let (scaled, overflow) = magnitude.multipliedReportingOverflow(by: 10)
                let (next, overflowAgain) = scaled.addingReportingOverflow(digit)
                if overflow || overflowAgain {
                    return nil
                }
                magnitude = next
            }
        }
        // Like Foundation's conversion: the magnitude must fit T, so -2^63 does not reach Int64.min this way.
        if negative {
            guard T.isSigned, let value = T(exactly: magnitude) else { return nil }
            return 0 - value
        }
        return T(exactly: magnitude)
    }

    /// Powers of ten that `Double` represents exactly.
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22,
    ]

    /// Converts a literal into a floating-point type, or returns nil when Foundation would reject it: when it
    /// overflows to infinity, or underflows to zero without being zero.
    static func floatingPoint<T: BinaryFloatingPoint & LosslessStringConvertible>(
        _ bytes: UnsafeRawBufferPointer,
        _ range: Range<Int>
    ) -> T? {
        if let fast: T = clingerFastPath(bytes, range) {
            return fast
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        guard let value = T(text), value.isFinite else { return nil }
        if value == 0 {
            // Only digits before the exponent matter: 0e5 is zero, 1e-400 is not.
            for index in range {
                let byte = bytes[index]
                if byte == JSONByte.lowerE || byte == JSONByte.upperE { break }
                if byte > JSONByte.zero && byte <= JSONByte.nine { return nil }
            }
        }
        return value
    }

    /// Exact conversion for literals with at most 15 significant digits and a small decimal exponent (Clinger's
    /// fast path): the digits and the power of ten are both exact `Double`s, so one IEEE multiplication or division
    /// rounds correctly. Returns nil when it does not apply. Float takes the exact `Double` only for integers below
    /// 2^24 for the same reason.
    @inline(__always)
    private static func clingerFastPath<T: BinaryFloatingPoint>(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>)
        -> T?
    {
        var index = range.lowerBound
        let negative = bytes[index] == JSONByte.minus
        if negative {
            index += 1
        }
        var mantissa: UInt64 = 0
        var digits = 0
        var scale = 0
        var inFraction = false
        while index < range.upperBound {
            let byte = bytes[index]
            let digit = byte &- JSONByte.zero
            if digit < 10 {
                if mantissa == 0 && digit == 0 {
                    // Leading zeros (as in 0.001) are not significant.
                } else {
                    digits += 1
                    guard digits <= 15 else { return nil }
                    mantissa = mantissa * 10 + UInt64(digit)
                }
                if inFraction {
                    scale -= 1
                }
            } else if byte == JSONByte.dot {
                inFraction = true
            } else {
                // An exponent: leave it to the general parser.
                return nil
            }
            index += 1
        }
        var value: Double
        if T.self == Double.self {
            guard -scale < exactPowersOfTen.count else { return nil }
            value = Double(mantissa)
            if scale < 0 {
                value /= exactPowersOfTen[-scale]
            }
        } else {
            guard scale == 0 && mantissa < 1 << 24 else { return nil }
            value = Double(mantissa)
        }
        return T(negative ? -value : value)
    }
}

// MARK: - Decoder and single value container

/// The `Decoder` handed to `init(from:)`, and its own single value container as in Foundation. Three words, so
/// passing it as `any Decoder` does not allocate.
private struct DecoderHandle: Decoder, SingleValueDecodingContainer {
    let state: DecodingState
    let path: PathNode?
    let value: JSONSlice

    var codingPath: [any CodingKey] { path?.codingPath ?? [] }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try state.keyedContainer(keyedBy: type, value, path: path)
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try state.unkeyedContainer(value, path: path)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        self
    }

    func decodeNil() -> Bool {
        state.kind(of: value) == .null
    }

    func decode(_ type: Bool.Type) throws -> Bool { try state.decodeBool(value, codingPath) }
    func decode(_ type: String.Type) throws -> String { try state.decodeString(value, codingPath) }
    func decode(_ type: Double.Type) throws -> Double { try state.decodeFloatingPoint(type, value, codingPath) }
    func decode(_ type: Float.Type) throws -> Float { try state.decodeFloatingPoint(type, value, codingPath) }
    func decode(_ type: Int.Type) throws -> Int { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: Int8.Type) throws -> Int8 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: Int16.Type) throws -> Int16 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: Int32.Type) throws -> Int32 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: Int64.Type) throws -> Int64 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: Int128.Type) throws -> Int128 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt.Type) throws -> UInt { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try state.decodeInteger(type, value, codingPath) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try state.decodeInteger(type, value, codingPath) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try state.decode(type, value, parent: path, step: nil)
    }
}

// MARK: - Keyed container

/// A dictionary from key text to member position, for objects too large to scan linearly on every lookup. The
/// first of repeated keys wins, as in Foundation.
private final class MemberIndex {
    let positions: [String: Int]

    init(state: DecodingState, members: [Member]) {
        var positions = [String: Int](minimumCapacity: members.count)
        for position in members.indices {
            let key = state.key(of: members[position])
            if positions[key] == nil {
                positions[key] = position
            }
        }
        self.positions = positions
    }
}

/// Reads the members of one object, located when the container was made.
private struct KeyedContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: DecodingState
    let path: PathNode?
    /// This object's members, in document order.
    let members: [Member]
    let index: MemberIndex?

    var codingPath: [any CodingKey] { path?.codingPath ?? [] }

    var allKeys: [Key] {
        if let index {
            return index.positions.sorted { $0.value < $1.value }.compactMap { Key(stringValue: $0.key) }
        }
        var seen: [String] = []
        for member in members {
            let key = state.key(of: member)
            if !seen.contains(key) {
                seen.append(key)
            }
        }
        return seen.compactMap { Key(stringValue: $0) }
    }

    /// The value of the first member named `key`.
    private func find(_ key: Key) -> JSONSlice? {
        var text = key.stringValue
        if let index {
            return index.positions[text].map { members[$0].value }
        }
        return text.withUTF8 { utf8 in
            members.withUnsafeBufferPointer { members in
                for member in members where state.member(member, hasKey: utf8) {
                    return member.value
                }
                return nil
            }
        }
    }

    private func require(_ key: Key) throws -> JSONSlice {
        guard let value = find(key) else {
            throw DecodingError.keyNotFound(
                key,
                DecodingError.Context(
                    codingPath: codingPath,
                    debugDescription: "No value associated with key \(key) (\"\(key.stringValue)\")."
                )
            )
        }
        return value
    }

    private func path(_ key: Key) -> [any CodingKey] {
        codingPath + [key]
    }

    func contains(_ key: Key) -> Bool {
        find(key) != nil
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        state.kind(of: try require(key)) == .null
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
        try state.decodeBool(try require(key), path(key))
    }

    func decode(_ type: String.Type, forKey key: Key) throws -> String {
        try state.decodeString(try require(key), path(key))
    }

    func decode(_ type: Double.Type, forKey key: Key) throws -> Double {
        try state.decodeFloatingPoint(type, try require(key), path(key))
    }

    func decode(_ type: Float.Type, forKey key: Key) throws -> Float {
        try state.decodeFloatingPoint(type, try require(key), path(key))
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func decodeInteger<T: FixedWidthInteger>(_ type: T.Type, forKey key: Key) throws -> T {
        try state.decodeInteger(type, try require(key), path(key))
    }

    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try decodeInteger(type, forKey: key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try decodeInteger(type, forKey: key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try decodeInteger(type, forKey: key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try decodeInteger(type, forKey: key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try decodeInteger(type, forKey: key) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try decodeInteger(type, forKey: key) }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try decodeInteger(type, forKey: key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try state.decode(type, try require(key), parent: path, step: .key(key))
    }

    /// One lookup for presence, null and value, where the protocol's default needs three; a missing key and
    /// `null` both give nil, as in Foundation.
    private func decodeIfPresent<T>(_ key: Key, _ decode: (JSONSlice) throws -> T) throws -> T? {
        guard let value = find(key), state.kind(of: value) != .null else { return nil }
        return try decode(value)
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? {
        try decodeIfPresent(key) { try state.decodeBool($0, path(key)) }
    }

    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try decodeIfPresent(key) { try state.decodeString($0, path(key)) }
    }

    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try decodeIfPresent(key) { try state.decodeFloatingPoint(type, $0, path(key)) }
    }

    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? {
        try decodeIfPresent(key) { try state.decodeFloatingPoint(type, $0, path(key)) }
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func decodeIntegerIfPresent<T: FixedWidthInteger>(_ type: T.Type, forKey key: Key) throws -> T? {
        try decodeIfPresent(key) { try state.decodeInteger(type, $0, path(key)) }
    }

    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? {
        try decodeIntegerIfPresent(type, forKey: key)
    }
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? {
        try decodeIntegerIfPresent(type, forKey: key)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try decodeIfPresent(key) { try state.decode(type, $0, parent: path, step: .key(key)) }
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type,
        forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        try state.keyedContainer(keyedBy: type, try require(key), path: PathNode(parent: path, step: .key(key)))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try state.unkeyedContainer(try require(key), path: PathNode(parent: path, step: .key(key)))
    }

    /// A decoder for the `super` member, or for `null` when there is none, as in Foundation.
    func superDecoder() throws -> any Decoder {
        let key = JSONSuperKey()
        var value = JSONSlice.absentNull
        var text = key.stringValue
        text.withUTF8 { utf8 in
            for member in members where state.member(member, hasKey: utf8) {
                value = member.value
                break
            }
        }
        return DecoderHandle(state: state, path: PathNode(parent: path, step: .key(key)), value: value)
    }

    /// A decoder for the member named `key`, or for `null` when there is none, as in Foundation.
    func superDecoder(forKey key: Key) throws -> any Decoder {
        DecoderHandle(state: state, path: PathNode(parent: path, step: .key(key)), value: find(key) ?? .absentNull)
    }
}

// MARK: - Unkeyed container

/// Walks an array element by element. A class, because `count` is computed on first use and must be remembered
/// from a non-mutating getter; being a reference it also passes as `any UnkeyedDecodingContainer` without boxing.
private final class UnkeyedContainer: UnkeyedDecodingContainer {
    let state: DecodingState
    let path: PathNode?
    /// The opening bracket, for counting.
    let start: Int
    /// The next element, or the closing bracket once at the end.
    @exclusivity(unchecked) var offset: Int
    @exclusivity(unchecked) var currentIndex = 0
    @exclusivity(unchecked) private var knownCount: Int?

    init(state: DecodingState, path: PathNode?, start: Int) {
        self.state = state
        self.path = path
        self.start = start
        self.offset = state.skipWhitespace(from: start + 1)
    }

    var codingPath: [any CodingKey] { path?.codingPath ?? [] }

    /// Counted by walking the array once, the first time anyone asks.
    var count: Int? {
        if let knownCount { return knownCount }
        var elements = 0
        var position = state.skipWhitespace(from: start + 1)
        while state.bytes[position] != JSONByte.closeBracket {
            let element = state.locate(from: position)
            elements += 1
            position = state.nextElement(after: element)
        }
        knownCount = elements
        return elements
    }

    var isAtEnd: Bool {
        state.bytes[offset] == JSONByte.closeBracket
    }

    private var elementPath: [any CodingKey] {
        codingPath + [JSONIndexKey(currentIndex)]
    }

    /// The next element; at the end, Foundation's `valueNotFound` for `type`.
    private func next(_ type: Any.Type, _ message: String = "Unkeyed container is at end.") throws -> JSONSlice {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(
                type,
                DecodingError.Context(codingPath: elementPath, debugDescription: message)
            )
        }
        return state.locate(from: offset)
    }

    private func advance(past element: JSONSlice) {
        offset = state.nextElement(after: element)
        currentIndex += 1
    }

    /// Decodes the next element with `decode` and moves on only if that succeeds, as the protocol requires.
    @inline(__always)
    private func decodeNext<T>(_ type: T.Type, _ decode: (JSONSlice) throws -> T) throws -> T {
        let element = try next(type)
        let value = try decode(element)
        advance(past: element)
        return value
    }

    func decodeNil() throws -> Bool {
        let element = try next(Never.self)
        guard state.kind(of: element) == .null else { return false }
        advance(past: element)
        return true
    }

    func decode(_ type: Bool.Type) throws -> Bool {
        try decodeNext(type) { try state.decodeBool($0, elementPath) }
    }

    func decode(_ type: String.Type) throws -> String {
        try decodeNext(type) { try state.decodeString($0, elementPath) }
    }

    func decode(_ type: Double.Type) throws -> Double {
        try decodeNext(type) { try state.decodeFloatingPoint(type, $0, elementPath) }
    }

    func decode(_ type: Float.Type) throws -> Float {
        try decodeNext(type) { try state.decodeFloatingPoint(type, $0, elementPath) }
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func decodeInteger<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        try decodeNext(type) { try state.decodeInteger(type, $0, elementPath) }
    }

    func decode(_ type: Int.Type) throws -> Int { try decodeInteger(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try decodeInteger(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try decodeInteger(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try decodeInteger(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try decodeInteger(type) }
    func decode(_ type: Int128.Type) throws -> Int128 { try decodeInteger(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try decodeInteger(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try decodeInteger(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try decodeInteger(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try decodeInteger(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try decodeInteger(type) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try decodeInteger(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try decodeNext(type) { try state.decode(type, $0, parent: path, step: .index(currentIndex)) }
    }

    /// Foundation's behaviour: at the end this returns nil and still moves past the end.
    func decodeIfPresent<T: Decodable>(_ type: T.Type) throws -> T? {
        guard !isAtEnd else {
            currentIndex += 1
            return nil
        }
        let element = state.locate(from: offset)
        let value: T? =
            state.kind(of: element) == .null
            ? nil : try state.decode(type, element, parent: path, step: .index(currentIndex))
        advance(past: element)
        return value
    }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey>
    {
        try decodeNext(KeyedDecodingContainer<NestedKey>.self) {
            try state.keyedContainer(keyedBy: type, $0, path: PathNode(parent: path, step: .index(currentIndex)))
        }
    }

    func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try decodeNext((any UnkeyedDecodingContainer).self) {
            try state.unkeyedContainer($0, path: PathNode(parent: path, step: .index(currentIndex)))
        }
    }

    func superDecoder() throws -> any Decoder {
        try decodeNext((any Decoder).self) {
            DecoderHandle(state: state, path: PathNode(parent: path, step: .index(currentIndex)), value: $0)
        }
    }
}
