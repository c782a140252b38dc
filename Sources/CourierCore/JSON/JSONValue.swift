//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A JSON value, for untyped payloads, error details and pattern objects.
///
/// Numbers keep the distinction JSON text makes: a literal without fraction or exponent that fits `Int64` is an
/// ``integer(_:)``, every other number a ``double(_:)``. Equality is structural and exact, so `.integer(1)` and
/// `.double(1)` are different values; use ``intValue`` or ``doubleValue`` to compare numerically.
///
/// Build values with literals, parse them with `init(parsing:)`, and serialise them with
/// ``jsonBytes`` or ``jsonText``:
///
/// ```swift
/// let payload: JSONValue = ["user": "ada", "ids": [1, 2, 3], "admin": false]
/// let bytes = payload.jsonBytes  // {"admin":false,"ids":[1,2,3],"user":"ada"}
/// ```
public enum JSONValue: Sendable, Hashable {
    /// The literal `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number written without fraction or exponent that fits `Int64`.
    case integer(Int64)
    /// Any other number.
    case double(Double)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object; member order is not preserved and serialisation sorts the keys.
    case object([String: JSONValue])
}

// MARK: - Parsing and serialising

extension JSONValue {
    /// Parses a JSON document.
    ///
    /// The document must be exactly one JSON value, optionally surrounded by whitespace. Parsing is strict
    /// (RFC 8259): trailing commas, comments, single quotes, leading zeros, `NaN`, invalid escapes, unescaped
    /// control characters and invalid UTF-8 are all rejected, as is nesting deeper than 512 levels. When an object
    /// repeats a key, the last value wins.
    ///
    /// - Parameter bytes: The UTF-8 encoded document.
    /// - Throws: ``JSONError`` describing the first problem and its byte offset.
    public init(parsing bytes: [UInt8]) throws {
        self = try bytes.withUnsafeBytes { try JSONValue(parsing: $0) }
    }

    /// Parses a JSON document held in a string.
    ///
    /// Behaves exactly like parsing the string's UTF-8 bytes with the `[UInt8]` overload.
    ///
    /// - Parameter text: The document.
    /// - Throws: ``JSONError`` describing the first problem and its byte offset in the UTF-8 encoding.
    public init(parsing text: String) throws {
        var text = text
        // Native strings are already contiguous UTF-8, so this does not copy them.
        self = try text.withUTF8 { try JSONValue(parsing: UnsafeRawBufferPointer($0)) }
    }

    /// Parses a JSON document from raw memory, for codecs that already hold a buffer.
    ///
    /// - Parameter buffer: The UTF-8 encoded document.
    /// - Throws: ``JSONError`` describing the first problem and its byte offset.
    package init(parsing buffer: UnsafeRawBufferPointer) throws {
        self = try JSONScanner.parseValue(in: buffer, range: 0..<buffer.count)
    }

    /// The compact UTF-8 serialisation of the value.
    ///
    /// Object keys are sorted by code point so that equal values serialise identically. Non-finite doubles,
    /// which JSON cannot express, are written as `null`.
    public var jsonBytes: [UInt8] {
        var out: [UInt8] = []
        JSONWriter.append(self, to: &out)
        return out
    }

    /// The compact serialisation of the value as a string.
    ///
    /// Identical to ``jsonBytes`` decoded as UTF-8.
    public var jsonText: String {
        String(decoding: jsonBytes, as: UTF8.self)
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact JSON text of the value.
    ///
    /// Same as ``jsonText``, so interpolating a value into a log message shows valid JSON.
    public var description: String { jsonText }
}

// MARK: - Accessors

extension JSONValue {
    /// The string, if this is a string.
    ///
    /// No conversion is attempted from other kinds.
    public var stringValue: String? {
        if case .string(let value) = self { value } else { nil }
    }

    /// The number as an `Int64`, if this is an integer or a double with an exactly representable integral value.
    ///
    /// Doubles are accepted because peers such as JavaScript do not distinguish `1` from `1.0`.
    public var intValue: Int64? {
        switch self {
        case .integer(let value): value
        case .double(let value):
            // Range-check, then convert and compare, rather than `Int64(exactly:)`, which calls libm's `trunc`
            // and so needs libm linked. NaN fails the range check.
            if value >= -0x1p63 && value < 0x1p63, case let integer = Int64(value), Double(integer) == value {
                integer
            } else {
                nil
            }
        default: nil
        }
    }

    /// The number as a `Double`, if this is a double or an integer.
    ///
    /// Integers beyond 2^53 are rounded to the nearest `Double`.
    public var doubleValue: Double? {
        switch self {
        case .integer(let value): Double(value)
        case .double(let value): value
        default: nil
        }
    }

    /// The Boolean, if this is `true` or `false`.
    ///
    /// Numbers are not treated as Booleans.
    public var boolValue: Bool? {
        if case .bool(let value) = self { value } else { nil }
    }

    /// The elements, if this is an array.
    ///
    /// Returns `nil` for every other kind.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { value } else { nil }
    }

    /// The members, if this is an object.
    ///
    /// Returns `nil` for every other kind.
    public var objectValue: [String: JSONValue]? {
        if case .object(let value) = self { value } else { nil }
    }

    /// Whether this is `null`.
    ///
    /// A missing member is not `null`; check the subscript's result for `nil` to detect absence.
    public var isNull: Bool {
        if case .null = self { true } else { false }
    }

    /// The member named `key`, if this is an object that has it.
    ///
    /// - Parameter key: The member name.
    /// - Returns: The member's value, or `nil` if this is not an object or has no such member.
    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { members[key] } else { nil }
    }

    /// The element at `index`, if this is an array that long.
    ///
    /// Out-of-range indices return `nil` instead of trapping, since payloads are untrusted.
    ///
    /// - Parameter index: The zero-based element index.
    /// - Returns: The element, or `nil` if this is not an array or `index` is out of range.
    public subscript(index: Int) -> JSONValue? {
        if case .array(let elements) = self, elements.indices.contains(index) { elements[index] } else { nil }
    }
}

// MARK: - Codable

extension JSONValue: Codable {
    /// Decodes any JSON value from a single-value container.
    ///
    /// Kinds are tried from most to least specific: `null`, then `Bool` before numbers (so `true` is not taken for
    /// `1` by lenient decoders), then `Int64` before `Double` (so integers stay exact), then string, array and
    /// object.
    ///
    /// - Parameter decoder: The decoder to read from.
    /// - Throws: `DecodingError.dataCorrupted` if the value is none of the JSON kinds.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .double(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else if let value = try? container.decode([String: JSONValue].self) {
            self = .object(value)
        } else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "value is not a JSON value")
        }
    }

    /// Encodes the value into a single-value container.
    ///
    /// Each case encodes as the matching Swift type, so encoders see ordinary values.
    ///
    /// - Parameter encoder: The encoder to write to.
    /// - Throws: Whatever the encoder throws, for example for non-finite doubles.
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .double(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

// MARK: - Literals

extension JSONValue: ExpressibleByNilLiteral {
    /// Creates ``null`` from `nil`.
    ///
    /// - Parameter nilLiteral: The `nil` literal.
    public init(nilLiteral: ()) {
        self = .null
    }
}

extension JSONValue: ExpressibleByBooleanLiteral {
    /// Creates a ``bool(_:)`` from `true` or `false`.
    ///
    /// - Parameter value: The literal's value.
    public init(booleanLiteral value: Bool) {
        self = .bool(value)
    }
}

extension JSONValue: ExpressibleByIntegerLiteral {
    /// Creates an ``integer(_:)`` from an integer literal.
    ///
    /// - Parameter value: The literal's value.
    public init(integerLiteral value: Int64) {
        self = .integer(value)
    }
}

extension JSONValue: ExpressibleByFloatLiteral {
    /// Creates a ``double(_:)`` from a floating-point literal.
    ///
    /// - Parameter value: The literal's value.
    public init(floatLiteral value: Double) {
        self = .double(value)
    }
}

extension JSONValue: ExpressibleByStringLiteral {
    /// Creates a ``string(_:)`` from a string literal.
    ///
    /// - Parameter value: The literal's value.
    public init(stringLiteral value: String) {
        self = .string(value)
    }
}

extension JSONValue: ExpressibleByArrayLiteral {
    /// Creates an ``array(_:)`` from an array literal.
    ///
    /// - Parameter elements: The literal's elements.
    public init(arrayLiteral elements: JSONValue...) {
        self = .array(elements)
    }
}

extension JSONValue: ExpressibleByDictionaryLiteral {
    /// Creates an ``object(_:)`` from a dictionary literal.
    ///
    /// A repeated key keeps its last value, as parsing does, rather than trapping.
    ///
    /// - Parameter elements: The literal's key-value pairs.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self = .object(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
}
