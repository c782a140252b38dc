//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierTestSupport
import Foundation
import Testing

@testable import CourierCore

// MARK: - Helpers

/// Runs `body` over the UTF-8 bytes of `text`.
@discardableResult
private func withBytes<T>(_ text: String, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
    try Array(text.utf8).withUnsafeBytes(body)
}

/// Validates a whole document with the scanner, the path the wire codecs use: one value, then only whitespace.
private func scanDocument(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { buffer in
        let scanned = try JSONScanner.scanValue(in: buffer, from: 0)
        for offset in scanned.range.upperBound..<buffer.count where ![0x20, 0x09, 0x0A, 0x0D].contains(buffer[offset]) {
            throw JSONError(message: "trailing bytes", offset: offset)
        }
    }
}

/// The text of `range` in `bytes`.
private func text(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
    String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
}

private func nestedArrays(depth: Int) -> String {
    String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
}

// MARK: - Round trips and serialisation

@Suite("JSONValue round trips and serialisation")
struct JSONRoundTripTests {
    static let values: [JSONValue] = [
        .null,
        .bool(true),
        .bool(false),
        .integer(0),
        .integer(-1),
        .integer(42),
        .integer(.max),
        .integer(.min),
        .double(1.5),
        .double(-0.25),
        .double(1.0),
        .double(1e300),
        .double(-1e-7),
        .double(.leastNonzeroMagnitude),
        .double(.greatestFiniteMagnitude),
        .double(0.1 + 0.2),
        .string(""),
        .string("hello"),
        .string("quote \" backslash \\ slash / newline \n tab \t nul \u{0} unit \u{1F} del \u{7F}"),
        .string("café 中文 😀 👩‍👩‍👧"),
        .array([]),
        .array([1, "a", nil, true, 2.5, [], [:]]),
        .object([:]),
        .object(["a": 1, "b": ["c": [true, false, nil]], "": "empty key", "é": "accented key"]),
        ["pattern": ["cmd": "sum", "role": "math"], "data": [1, 2, 3], "id": "7c9e"],
    ]

    @Test("parsing the serialisation gives back the value", arguments: values)
    func roundTrip(_ value: JSONValue) throws {
        #expect(try JSONValue(parsing: value.jsonText) == value)
        #expect(try JSONValue(parsing: value.jsonBytes) == value)
        // Serialisation is deterministic, so it is stable across a round trip.
        #expect(try JSONValue(parsing: value.jsonBytes).jsonBytes == value.jsonBytes)
    }

    @Test(
        "compact serialisation is exact",
        arguments: [
            (JSONValue.null, "null"),
            (true, "true"),
            (false, "false"),
            (0, "0"),
            (-42, "-42"),
            (.integer(.max), "9223372036854775807"),
            (.integer(.min), "-9223372036854775808"),
            (1.5, "1.5"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (.double(.infinity), "null"),
            (.double(-.infinity), "null"),
            (.double(.nan), "null"),
            ("", #""""#),
            ("a/b", #""a/b""#),
            ([], "[]"),
            ([:], "{}"),
            ([1, [2, [3]], nil], "[1,[2,[3]],null]"),
            (["b": 1, "a": [true, nil, 1.5, "x"]], #"{"a":[true,null,1.5,"x"],"b":1}"#),
        ] as [(JSONValue, String)]
    )
    func serialisation(_ value: JSONValue, _ expected: String) {
        #expect(value.jsonText == expected)
        #expect(value.jsonBytes == Array(expected.utf8))
        #expect(value.description == expected)
    }

    @Test("object keys are written in code point order of their UTF-8 bytes")
    func keyOrder() {
        let value: JSONValue = ["z": 1, "é": 2, "a": 3, "B": 4, "aa": 5, "": 6, "😀": 7, "\u{FFFD}": 8, "Z": 9]
        #expect(value.jsonText == #"{"":6,"B":4,"Z":9,"a":3,"aa":5,"z":1,"é":2,"�":8,"😀":7}"#)
        // Swift's String `<` compares normalised text and would put the decomposed "á" after "b"; bytes do not.
        let decomposed: JSONValue = ["b": 2, "a\u{301}": 1]
        #expect(decomposed.jsonBytes == Array(#"{"a"#.utf8) + [0xCC, 0x81] + Array(#"":1,"b":2}"#.utf8))
    }

    @Test("strings are escaped minimally")
    func escaping() {
        var out: [UInt8] = []
        JSONWriter.appendString("a\"b\\c/d\n\r\t\u{08}\u{0C}\u{0}\u{01}\u{1F}\u{7F}é😀", to: &out)
        let expected = #""a\"b\\c/d\n\r\t\b\f\u0000\u0001\u001f"# + "\u{7F}é😀\""
        #expect(String(decoding: out, as: UTF8.self) == expected)
        // Non-ASCII is written as literal UTF-8, not as \u escapes.
        #expect(out.suffix(7) == [0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80, 0x22])
    }

    @Test("appending writes after existing content")
    func appendsToExistingBuffer() {
        var out = Array("prefix:".utf8)
        JSONWriter.append(["k": "v"], to: &out)
        JSONWriter.appendString("tail", to: &out)
        #expect(String(decoding: out, as: UTF8.self) == #"prefix:{"k":"v"}"tail""#)
    }

    @Test("escaping is correct wherever the special byte falls in a long string")
    func escapingPositions() throws {
        for position in 0..<24 {
            for special in ["\"", "\\", "\n", "\u{01}", "é", "😀"] {
                var characters = Array(repeating: "x", count: 24)
                characters[position] = special
                let string = characters.joined()
                let value = JSONValue.string(string)
                #expect(try JSONValue(parsing: value.jsonBytes) == value, "position \(position), \(special)")
            }
        }
    }
}

// MARK: - Literals, accessors, Codable

@Suite("JSONValue API")
struct JSONValueAPITests {
    @Test("literals build the matching cases")
    func literals() {
        let null: JSONValue = nil
        let bool: JSONValue = true
        let integer: JSONValue = -7
        let double: JSONValue = 2.5
        let string: JSONValue = "text"
        let array: JSONValue = [1, "two", nil]
        let object: JSONValue = ["a": 1, "b": [false]]
        let duplicate: JSONValue = ["k": 1, "k": 2]
        #expect(null == .null)
        #expect(bool == .bool(true))
        #expect(integer == .integer(-7))
        #expect(double == .double(2.5))
        #expect(string == .string("text"))
        #expect(array == .array([.integer(1), .string("two"), .null]))
        #expect(object == .object(["a": .integer(1), "b": .array([.bool(false)])]))
        #expect(duplicate == .object(["k": .integer(2)]))
    }

    @Test("accessors return values of the matching kind only")
    func accessors() {
        let value: JSONValue = [
            "s": "str", "i": 3, "d": 2.5, "di": 4.0, "b": true, "n": nil, "a": [1, 2], "o": ["x": 1],
        ]
        #expect(value["s"]?.stringValue == "str")
        #expect(value["i"]?.intValue == 3)
        #expect(value["i"]?.doubleValue == 3.0)
        #expect(value["d"]?.doubleValue == 2.5)
        #expect(value["d"]?.intValue == nil)
        #expect(value["di"]?.intValue == 4)
        #expect(JSONValue.double(1e19).intValue == nil)
        #expect(JSONValue.double(.nan).intValue == nil)
        #expect(value["b"]?.boolValue == true)
        #expect(value["i"]?.boolValue == nil)
        #expect(value["n"]?.isNull == true)
        #expect(value["s"]?.isNull == false)
        #expect(value["a"]?.arrayValue == [1, 2])
        #expect(value["o"]?.objectValue == ["x": 1])
        #expect(value["s"]?.intValue == nil)
        #expect(value["i"]?.stringValue == nil)
        #expect(value.arrayValue == nil)
        #expect(value["missing"] == nil)
        #expect(value[0] == nil)
        #expect(value["a"]?[1] == 2)
        #expect(value["a"]?[2] == nil)
        #expect(value["a"]?[-1] == nil)
        #expect(value["a"]?["s"] == nil)
        #expect(value["o"]?["x"]?.intValue == 1)
        #expect(value.objectValue?.count == 8)
    }

    @Test("Codable round trip through Foundation's JSONEncoder and JSONDecoder")
    func codableRoundTrip() throws {
        let value: JSONValue = [
            "null": nil, "true": true, "false": false, "int": 42, "big": .integer(.max), "small": .integer(.min),
            "double": 2.5, "negative": -0.125, "string": "é😀\"\n", "array": [1, "a", [nil]], "object": ["k": [:]],
        ]
        let encoded = try JSONEncoder().encode(value)
        #expect(try JSONDecoder().decode(JSONValue.self, from: encoded) == value)
        // Foundation's output is valid JSON for our parser too.
        #expect(try JSONValue(parsing: Array(encoded)) == value)
        // And our output decodes with Foundation.
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(value.jsonBytes)) == value)
    }

    @Test("Codable decoding tells booleans, integers and doubles apart")
    func codableKinds() throws {
        let json = #"{"t":true,"f":false,"one":1,"zero":0,"half":0.5,"huge":1e300,"s":"1","n":null,"a":[true,1]}"#
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
        #expect(value["t"] == .bool(true))
        #expect(value["f"] == .bool(false))
        #expect(value["one"] == .integer(1))
        #expect(value["zero"] == .integer(0))
        #expect(value["half"] == .double(0.5))
        #expect(value["huge"] == .double(1e300))
        #expect(value["s"] == .string("1"))
        #expect(value["n"] == .null)
        #expect(value["a"] == [.bool(true), .integer(1)])
    }

    @Test("Codable decoding tries Bool before numbers and Int64 before Double, for lenient decoders")
    func codableOrder() throws {
        #expect(try JSONValue(from: LaxDecoder(scalar: .bool(true))) == .bool(true))
        #expect(try JSONValue(from: LaxDecoder(scalar: .bool(false))) == .bool(false))
        #expect(try JSONValue(from: LaxDecoder(scalar: .integer(7))) == .integer(7))
        #expect(try JSONValue(from: LaxDecoder(scalar: .double(7.5))) == .double(7.5))
        #expect(try JSONValue(from: LaxDecoder(scalar: .null)) == .null)
        #expect(throws: DecodingError.self) { try JSONValue(from: LaxDecoder(scalar: .unsupported)) }
    }

    @Test("JSONValue works as a Codable member of other types")
    func codableMember() throws {
        struct Envelope: Codable, Equatable {
            var id: String
            var data: JSONValue
            var err: JSONValue?
        }
        let envelope = Envelope(id: "1", data: ["sum": [1, 2.5, "x"]], err: nil)
        let decoded = try JSONDecoder().decode(Envelope.self, from: JSONEncoder().encode(envelope))
        #expect(decoded == envelope)
    }
}

/// A deliberately lax decoder, like some non-JSON formats: booleans also read as numbers and integers as doubles.
private struct LaxDecoder: Decoder, SingleValueDecodingContainer {
    enum Scalar {
        case null
        case bool(Bool)
        case integer(Int64)
        case double(Double)
        case unsupported
    }

    let scalar: Scalar
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    private var mismatch: DecodingError {
        DecodingError.typeMismatch(Any.self, .init(codingPath: [], debugDescription: "lax decoder"))
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> { throw mismatch }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer { throw mismatch }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { self }

    func decodeNil() -> Bool {
        if case .null = scalar { true } else { false }
    }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case .bool(let value) = scalar else { throw mismatch }
        return value
    }

    func decode(_ type: Int64.Type) throws -> Int64 {
        switch scalar {
        case .bool(let value): value ? 1 : 0
        case .integer(let value): value
        default: throw mismatch
        }
    }

    func decode(_ type: Double.Type) throws -> Double {
        switch scalar {
        case .bool(let value): value ? 1 : 0
        case .integer(let value): Double(value)
        case .double(let value): value
        default: throw mismatch
        }
    }

    func decode(_ type: String.Type) throws -> String { throw mismatch }
    func decode(_ type: Float.Type) throws -> Float { throw mismatch }
    func decode(_ type: Int.Type) throws -> Int { throw mismatch }
    func decode(_ type: Int8.Type) throws -> Int8 { throw mismatch }
    func decode(_ type: Int16.Type) throws -> Int16 { throw mismatch }
    func decode(_ type: Int32.Type) throws -> Int32 { throw mismatch }
    func decode(_ type: UInt.Type) throws -> UInt { throw mismatch }
    func decode(_ type: UInt8.Type) throws -> UInt8 { throw mismatch }
    func decode(_ type: UInt16.Type) throws -> UInt16 { throw mismatch }
    func decode(_ type: UInt32.Type) throws -> UInt32 { throw mismatch }
    func decode(_ type: UInt64.Type) throws -> UInt64 { throw mismatch }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { throw mismatch }
}

// MARK: - Parsing

@Suite("JSON parsing")
struct JSONParsingTests {
    @Test("every kind parses, with surrounding whitespace")
    func kinds() throws {
        #expect(try JSONValue(parsing: " \t\r\n null \t\r\n") == .null)
        #expect(try JSONValue(parsing: "true") == true)
        #expect(try JSONValue(parsing: "false") == false)
        #expect(try JSONValue(parsing: "0") == 0)
        #expect(try JSONValue(parsing: "-0") == 0)
        #expect(try JSONValue(parsing: "-12") == -12)
        #expect(try JSONValue(parsing: "0.5") == 0.5)
        #expect(try JSONValue(parsing: "-0.0") == .double(-0.0))
        #expect(try JSONValue(parsing: "1E2") == .double(100))
        #expect(try JSONValue(parsing: "1e+2") == .double(100))
        #expect(try JSONValue(parsing: "25e-1") == .double(2.5))
        #expect(try JSONValue(parsing: "1.5E-3") == .double(0.0015))
        #expect(try JSONValue(parsing: #""text""#) == "text")
        #expect(try JSONValue(parsing: "[ 1 , [ ] , { } ]") == [1, [], [:]])
        #expect(try JSONValue(parsing: #"{ "a" : { "b" : [ null ] } }"#) == ["a": ["b": [nil]]])
    }

    @Test("Int64 bounds are integers and anything beyond becomes a double")
    func integerBounds() throws {
        #expect(try JSONValue(parsing: "9223372036854775807") == .integer(.max))
        #expect(try JSONValue(parsing: "9223372036854775808") == .double(9_223_372_036_854_775_808))
        #expect(try JSONValue(parsing: "-9223372036854775808") == .integer(.min))
        #expect(try JSONValue(parsing: "-9223372036854775809") == .double(-9_223_372_036_854_775_808.0))
        #expect(try JSONValue(parsing: "123456789012345678901234567890") == .double(1.2345678901234568e29))
        #expect(try JSONValue(parsing: "9223372036854775807.0") == .double(9_223_372_036_854_775_808.0))
    }

    @Test("numbers beyond Double's range become infinity, as in JavaScript, and serialise as null")
    func hugeNumbers() throws {
        let value = try JSONValue(parsing: "[1e400, -1e400, 1e-400]")
        #expect(value == [.double(.infinity), .double(-.infinity), .double(0)])
        #expect(value.jsonText == "[null,null,0.0]")
    }

    @Test("string escapes decode")
    func escapes() throws {
        #expect(try JSONValue(parsing: #""\u00e9""#) == "é")
        #expect(try JSONValue(parsing: #""\u00E9\u4E2d""#) == "é中")
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == "😀")
        #expect(try JSONValue(parsing: #""\uD83D\uDE00!""#) == "😀!")
        #expect(try JSONValue(parsing: #""\"\\\/\b\f\n\r\t""#) == "\"\\/\u{08}\u{0C}\n\r\t")
        #expect(try JSONValue(parsing: #""\u0000\u001f\u007f\uffff""#) == "\u{0}\u{1F}\u{7F}\u{FFFF}")
        #expect(try JSONValue(parsing: #""a\u0041b\nc""#) == "aAb\nc")
        #expect(try JSONValue(parsing: #""\udbff\udfff""#) == "\u{10FFFF}")
        #expect(try JSONValue(parsing: #"{"k\u00e9y":1}"#) == ["kéy": 1])
        #expect(try JSONValue(parsing: "\"é😀/\"") == "é😀/")
    }

    @Test("duplicate keys keep the last value")
    func duplicateKeys() throws {
        #expect(try JSONValue(parsing: #"{"a":1,"b":2,"a":3}"#) == ["a": 3, "b": 2])
        #expect(try JSONValue(parsing: #"{"a":1,"\u0061":[true]}"#) == ["a": [true]])
    }

    @Test(
        "boundary UTF-8 sequences are accepted",
        arguments: [
            ([0xC2, 0x80], 0x80),
            ([0xDF, 0xBF], 0x7FF),
            ([0xE0, 0xA0, 0x80], 0x800),
            ([0xED, 0x9F, 0xBF], 0xD7FF),
            ([0xEE, 0x80, 0x80], 0xE000),
            ([0xEF, 0xBF, 0xBF], 0xFFFF),
            ([0xF0, 0x90, 0x80, 0x80], 0x10000),
            ([0xF4, 0x8F, 0xBF, 0xBF], 0x10FFFF),
        ] as [([UInt8], UInt32)]
    )
    func validUTF8(_ sequence: [UInt8], _ scalar: UInt32) throws {
        let document = [0x22] + sequence + [0x22]
        let expected = String(Character(try #require(Unicode.Scalar(scalar))))
        #expect(try JSONValue(parsing: document) == .string(expected))
        try scanDocument(document)
    }

    static let rejectedTexts: [String] = [
        // Empty input.
        "", " \n\t\r ",
        // Trailing and stray commas.
        "[1,2,]", #"{"a":1,}"#, "[,]", "[1,,2]", #"{,"a":1}"#, "[,1]", "{,}",
        // Number grammar.
        "01", "-01", "00", "-00", "012.5", "+1", ".5", "-.5", "1.", "1.e5", "-", "1e", "1e+", "1E-", "--1", "0x10",
        "1_000", "1.2.3", "-a",
        // Single quotes.
        "'a'", "['a']", "{'a':1}",
        // Comments.
        "// comment\n1", "/* comment */ 1", "[1 /* c */]", "1 // trailing", "# hash\n1",
        // Non-finite literals.
        "NaN", "Infinity", "-Infinity", "nan", "inf", "[NaN]", #"{"a":Infinity}"#,
        // Unescaped control characters in strings.
        "\"a\u{01}b\"", "\"tab\there\"", "\"line\nbreak\"", "\"nul\u{0}\"", "\"\u{1F}\"", "{\"a\nb\":1}",
        // Invalid escapes.
        #""\x""#, #""\u12""#, #""\uZZZZ""#, #""\'""#, #""\U0041""#, #""\a""#, #""\0""#, #""\u00e""#, #""\u 123""#,
        // Lone surrogates.
        #""\ud83d""#, #""\ude00""#, #""\ud83d\u0041""#, #""\ud83dx""#, #""\ude00\ud83d""#, #""\ud83d\ud83d""#,
        #""\ud83d\n""#, #"{"\udc00":1}"#,
        // Trailing garbage after the top-level value.
        "1 2", "{} x", "[] []", "truex", "nulll", #""a"b"#, "[1]]", "{}}", "0 0", "1,", "[1]\u{0}",
        // Unterminated values.
        "[1", #"{"a""#, #"{"a":"#, #""abc"#, "{", "[", #"{"a":1"#, #"""#, #""\"#, #""\u00"#, "[1,",
        // Whitespace that JSON does not allow.
        "\u{0B}1", "\u{0C}1", "\u{A0}1", "1\u{A0}", "\u{FEFF}1", "\u{2028}1", "[1,\u{0C}2]",
        // Misspelt literals.
        "tru", "True", "NULL", "fals", "nul", "t", "nulL",
        // Object structure.
        "{1:2}", #"{"a" 1}"#, #"{"a":1 "b":2}"#, "{a:1}", #"{"a"::1}"#, #"["a":1]"#, #"{"a"}"#, #"{"a",1}"#,
        #"{"a":}"#, "{null:1}",
        // Array structure and stray tokens.
        "[1 2]", "]", "}", ":", ",", "[}", "{]", "undefined", "()",
    ]

    @Test("strictness: invalid documents are rejected", arguments: rejectedTexts)
    func rejectsText(_ document: String) {
        #expect(throws: JSONError.self) { try JSONValue(parsing: document) }
        #expect(throws: JSONError.self) { try JSONValue(parsing: Array(document.utf8)) }
        #expect(throws: (any Error).self) { try scanDocument(Array(document.utf8)) }
    }

    static let rejectedBytes: [[UInt8]] = [
        [0x22, 0xC0, 0xAF, 0x22],  // overlong "/"
        [0x22, 0xC1, 0xBF, 0x22],  // overlong 2-byte
        [0x22, 0xE0, 0x80, 0xAF, 0x22],  // overlong 3-byte
        [0x22, 0xE0, 0x9F, 0xBF, 0x22],  // overlong 3-byte, just below U+0800
        [0x22, 0xF0, 0x80, 0x80, 0xAF, 0x22],  // overlong 4-byte
        [0x22, 0xF0, 0x8F, 0xBF, 0xBF, 0x22],  // overlong 4-byte, just below U+10000
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // U+D800 encoded in UTF-8
        [0x22, 0xED, 0xBF, 0xBF, 0x22],  // U+DFFF encoded in UTF-8
        [0x22, 0xED, 0xA0, 0xBD, 0xED, 0xB8, 0x80, 0x22],  // CESU-8 surrogate pair
        [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22],  // above U+10FFFF
        [0x22, 0xF5, 0x80, 0x80, 0x80, 0x22],  // lead byte above 0xF4
        [0x22, 0xF8, 0x88, 0x80, 0x80, 0x80, 0x22],  // 5-byte form
        [0x22, 0xFF, 0x22],
        [0x22, 0xFE, 0x22],
        [0x22, 0x80, 0x22],  // lone continuation byte
        [0x22, 0xBF, 0x22],  // lone continuation byte
        [0x22, 0xC3, 0x22],  // truncated 2-byte sequence
        [0x22, 0xE2, 0x82, 0x22],  // truncated 3-byte sequence
        [0x22, 0xF0, 0x9F, 0x98, 0x22],  // truncated 4-byte sequence
        [0x22, 0xC3, 0x41, 0x22],  // continuation replaced by ASCII
        [0x22, 0xC3],  // truncated at end of input
        [0x22, 0xF0, 0x9F],  // truncated at end of input
        [0x7B, 0x22, 0xC0, 0xAF, 0x22, 0x3A, 0x31, 0x7D],  // invalid UTF-8 in a key
        [0x5B, 0x22, 0x61, 0xE9, 0x22, 0x5D],  // Latin-1 "é"
        [0x22, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0x61, 0xE9, 0x22],  // Latin-1 after a long ASCII run
        [0xEF, 0xBB, 0xBF, 0x31],  // byte order mark before the value
        [0x31, 0x00],  // NUL after the value
        [0x5B, 0x31, 0x2C, 0x00, 0x5D],  // NUL in place of a value
        [0xC3, 0xA9],  // non-ASCII outside a string
    ]

    @Test("strictness: invalid UTF-8 and stray bytes are rejected", arguments: rejectedBytes)
    func rejectsBytes(_ document: [UInt8]) {
        #expect(throws: JSONError.self) { try JSONValue(parsing: document) }
        #expect(throws: (any Error).self) { try scanDocument(document) }
    }

    @Test(
        "errors report the offset of the problem",
        arguments: [
            ("[1,x]", 3, "unexpected character 'x' at offset 3"),
            ("[1,2,]", 5, "unexpected character ']' at offset 5"),
            ("", 0, "unexpected end of input at offset 0"),
            ("[1", 2, "unexpected end of input at offset 2"),
            ("01", 0, "leading zeros are not allowed in numbers at offset 0"),
            ("\"ab\u{01}\"", 3, "unescaped control character 0x01 in string at offset 3"),
            (#""\q""#, 1, "invalid escape sequence '\\' followed by character 'q' at offset 1"),
            (#"[true, "\ud800"]"#, 8, "unpaired surrogate in \\u escape at offset 8"),
            ("1 2", 2, "unexpected character '2' after the value at offset 2"),
            (#"{"a" 1}"#, 5, "expected ':' but found character '1' at offset 5"),
        ] as [(String, Int, String)]
    )
    func errorOffsets(_ document: String, _ offset: Int, _ message: String) {
        do {
            _ = try JSONValue(parsing: document)
            Issue.record("expected an error")
        } catch let error as JSONError {
            #expect(error.offset == offset)
            #expect(error.message == message)
            #expect(error.description == message)
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }

    @Test("nesting of 512 levels is accepted and 513 rejected")
    func depthLimit() throws {
        for depth in [1, 500, 512] {
            let document = nestedArrays(depth: depth)
            _ = try JSONValue(parsing: document)
            try scanDocument(Array(document.utf8))
        }
        let tooDeep = nestedArrays(depth: 513)
        #expect(throws: JSONError.self) { try JSONValue(parsing: tooDeep) }
        #expect(throws: JSONError.self) { try scanDocument(Array(tooDeep.utf8)) }

        // Objects count as levels too.
        let objects = { (depth: Int) in
            String(repeating: #"{"a":"#, count: depth - 1) + "{}" + String(repeating: "}", count: depth - 1)
        }
        _ = try JSONValue(parsing: objects(512))
        try scanDocument(Array(objects(512).utf8))
        #expect(throws: JSONError.self) { try JSONValue(parsing: objects(513)) }
        #expect(throws: JSONError.self) { try scanDocument(Array(objects(513).utf8)) }
    }

    @Test("a deeply nested value keeps its structure")
    func deepValue() throws {
        var expected: JSONValue = 1
        for level in 0..<499 {
            expected = level.isMultiple(of: 2) ? [expected] : ["k": expected]
        }
        #expect(try JSONValue(parsing: expected.jsonText) == expected)
    }

    @Test("parsing a String and its bytes agree")
    func stringAndBytesAgree() throws {
        let text = #"{"a":[1,2.5,"é\n😀"],"b":{"c":null}}"#
        #expect(try JSONValue(parsing: text) == JSONValue(parsing: Array(text.utf8)))
        let sliced = String(("  " + text).dropFirst(2))
        #expect(try JSONValue(parsing: sliced) == JSONValue(parsing: text))
    }
}

// MARK: - Scanner

@Suite("JSONScanner")
struct JSONScannerTests {
    @Test("scanObject reports key and value ranges with whitespace sprinkled in")
    func scanObjectRanges() throws {
        let document = " \n{ \"pattern\" :\t\"a.b\" ,\r\n \"data\" : [1, {\"x\" : 2}] , \"id\":\"7c\"  }\n "
        var members: [(key: String, escaped: Bool, value: String, kind: JSONKind)] = []
        try withBytes(document) { bytes throws in
            try JSONScanner.scanObject(bytes) { key, keyHasEscapes, value, kind throws in
                members.append((text(bytes, key), keyHasEscapes, text(bytes, value), kind))
                switch text(bytes, key) {
                case "pattern":
                    #expect(try JSONScanner.decodeString(in: bytes, range: value) == "a.b")
                case "data":
                    #expect(try JSONScanner.parseValue(in: bytes, range: value) == [1, ["x": 2]])
                case "id":
                    #expect(try JSONScanner.decodeString(in: bytes, range: value) == "7c")
                default:
                    Issue.record("unexpected key")
                }
            }
        }
        #expect(members.map(\.key) == ["pattern", "data", "id"])
        #expect(members.map(\.escaped) == [false, false, false])
        #expect(members.map(\.value) == [#""a.b""#, #"[1, {"x" : 2}]"#, #""7c""#])
        #expect(members.map(\.kind) == [.string, .array, .string])
    }

    @Test("scanObject reports every kind, duplicates and escaped keys")
    func scanObjectKinds() throws {
        let document = #"{"n":null,"b":false,"i":-1.5e3,"s":"x","a":[],"o":{},"k\"ey":1,"n":true}"#
        var members: [(key: String, escaped: Bool, value: String, kind: JSONKind)] = []
        try withBytes(document) { bytes throws in
            try JSONScanner.scanObject(bytes) { key, keyHasEscapes, value, kind throws in
                members.append((text(bytes, key), keyHasEscapes, text(bytes, value), kind))
            }
        }
        #expect(members.map(\.key) == ["n", "b", "i", "s", "a", "o", #"k\"ey"#, "n"])
        #expect(members.map(\.escaped) == [false, false, false, false, false, false, true, false])
        #expect(members.map(\.value) == ["null", "false", "-1.5e3", #""x""#, "[]", "{}", "1", "true"])
        #expect(members.map(\.kind) == [.null, .bool, .number, .string, .array, .object, .number, .bool])
    }

    @Test("scanObject accepts an empty object")
    func scanEmptyObject() throws {
        var count = 0
        try withBytes(" {  } ") { bytes in try JSONScanner.scanObject(bytes) { _, _, _, _ in count += 1 } }
        #expect(count == 0)
    }

    @Test(
        "scanObject rejects documents that are not exactly one valid object",
        arguments: [
            "", "[]", "1", #""s""#, "{} {}", "{}x", #"{"a":1,}"#, #"{"a":01}"#, #"{"a":[1,]}"#, #"{"a"}"#, "{",
            #"{"a":1"#, #"{"a":"\ud800"}"#, #"{"a":1}]"#,
        ]
    )
    func scanObjectRejects(_ document: String) {
        #expect(throws: JSONError.self) {
            try withBytes(document) { try JSONScanner.scanObject($0) { _, _, _, _ in } }
        }
    }

    @Test("scanObject rethrows the body's error and stops")
    func scanObjectBodyError() {
        struct Stop: Error {}
        var calls = 0
        #expect(throws: Stop.self) {
            try withBytes(#"{"a":1,"b":2}"#) { bytes throws in
                try JSONScanner.scanObject(bytes) { _, _, _, _ in
                    calls += 1
                    throw Stop()
                }
            }
        }
        #expect(calls == 1)
    }

    @Test("scanObject enforces the depth limit including the envelope")
    func scanObjectDepth() throws {
        let accepted = #"{"a":"# + nestedArrays(depth: 511) + "}"
        let rejected = #"{"a":"# + nestedArrays(depth: 512) + "}"
        try withBytes(accepted) { try JSONScanner.scanObject($0) { _, _, _, _ in } }
        #expect(throws: JSONError.self) {
            try withBytes(rejected) { try JSONScanner.scanObject($0) { _, _, _, _ in } }
        }
    }

    @Test("scanValue finds the extent of nested values and stops there")
    func scanValueNested() throws {
        let document = #"  {"a":[1,2,{"b":null,"c":[[],{}]}],"d":"x\"}"} , 5.5e1 ,"tail""#
        try withBytes(document) { bytes throws in
            let first = try JSONScanner.scanValue(in: bytes, from: 0)
            #expect(first.kind == .object)
            #expect(text(bytes, first.range) == #"{"a":[1,2,{"b":null,"c":[[],{}]}],"d":"x\"}"}"#)

            let commaOffset = first.range.upperBound + 1
            #expect(bytes[commaOffset] == UInt8(ascii: ","))
            let second = try JSONScanner.scanValue(in: bytes, from: commaOffset + 1)
            #expect(second.kind == .number)
            #expect(text(bytes, second.range) == "5.5e1")

            let third = try JSONScanner.scanValue(in: bytes, from: second.range.upperBound + 2)
            #expect(third.kind == .string)
            #expect(text(bytes, third.range) == #""tail""#)
            #expect(third.range.upperBound == bytes.count)

            // The inner array starts at offset 7.
            let inner = try JSONScanner.scanValue(in: bytes, from: 7)
            #expect(inner.kind == .array)
            #expect(text(bytes, inner.range) == #"[1,2,{"b":null,"c":[[],{}]}]"#)
            #expect(try JSONScanner.parseValue(in: bytes, range: inner.range) == [1, 2, ["b": nil, "c": [[], [:]]]])
        }
    }

    @Test(
        "scanValue reports each kind",
        arguments: [
            ("null", JSONKind.null), ("true", .bool), ("false", .bool), ("-0.5", .number), ("7", .number),
            (#""s""#, .string), ("[]", .array), ("{}", .object), ("[[1],[2]]", .array), (#"{"a":{}}"#, .object),
        ] as [(String, JSONKind)]
    )
    func scanValueKinds(_ document: String, _ kind: JSONKind) throws {
        try withBytes(" \(document) ,") { bytes throws in
            let scanned = try JSONScanner.scanValue(in: bytes, from: 0)
            #expect(scanned.kind == kind)
            #expect(scanned.range == 1..<(1 + document.utf8.count))
        }
    }

    @Test("scanValue rejects nothing at all and a value that is cut off")
    func scanValueRejects() {
        #expect(throws: JSONError.self) { try withBytes("   ") { try JSONScanner.scanValue(in: $0, from: 0) } }
        #expect(throws: JSONError.self) { try withBytes("[1,2") { try JSONScanner.scanValue(in: $0, from: 0) } }
        #expect(throws: JSONError.self) { try withBytes("[1] x") { try JSONScanner.scanValue(in: $0, from: 3) } }
    }

    @Test("decodeString decodes escapes and validates its range")
    func decodeString() throws {
        let decode = { (document: String) in
            try withBytes(document) { try JSONScanner.decodeString(in: $0, range: 0..<$0.count) }
        }
        #expect(try decode(#""plain""#) == "plain")
        #expect(try decode(#""""#) == "")
        #expect(try decode(#""\u00e9\ud83d\ude00\n\"""#) == "é😀\n\"")
        #expect(try decode("\"é😀\"") == "é😀")
        // A lone surrogate is rejected.
        #expect(throws: JSONError.self) { try decode(#""\ud83d""#) }
        #expect(throws: JSONError.self) { try decode(#""\udc00x""#) }
        // The range must hold exactly one string literal.
        #expect(throws: JSONError.self) { try decode(#""ab" "#) }
        #expect(throws: JSONError.self) { try decode(#""ab"#) }
        #expect(throws: JSONError.self) { try decode(#"ab""#) }
        #expect(throws: JSONError.self) { try decode("") }
        #expect(throws: JSONError.self) { try decode("1") }
        // A literal inside a larger buffer, located by scanValue.
        try withBytes(#"[1,"x\u0041y",2]"#) { bytes throws in
            let scanned = try JSONScanner.scanValue(in: bytes, from: 3)
            #expect(scanned.range == 3..<13)
            #expect(try JSONScanner.decodeString(in: bytes, range: scanned.range) == "xAy")
            #expect(throws: JSONError.self) { try JSONScanner.decodeString(in: bytes, range: 3..<12) }
        }
    }

    @Test("parseValue requires its range to hold exactly one value")
    func parseValueRange() throws {
        try withBytes("[1, 22, 3]") { bytes throws in
            #expect(try JSONScanner.parseValue(in: bytes, range: 4..<6) == 22)
            #expect(try JSONScanner.parseValue(in: bytes, range: 3..<6) == 22)
            #expect(throws: JSONError.self) { try JSONScanner.parseValue(in: bytes, range: 4..<9) }
            #expect(throws: JSONError.self) { try JSONScanner.parseValue(in: bytes, range: 0..<5) }
            #expect(throws: JSONError.self) { try JSONScanner.parseValue(in: bytes, range: 3..<3) }
        }
        try withBytes("") { bytes throws in
            #expect(throws: JSONError.self) { try JSONValue(parsing: bytes) }
        }
    }
}

// MARK: - Cross-check against Foundation

@Suite("Cross-check with Foundation's JSONSerialization", .cpuBound)
struct JSONCrossCheckTests {
    static let documents: [String] = [
        "{}", "[]", "null", "true", "false", "0", "-0", "42", "-17", "3.14159", "-2.5e-3", "1E10", "6.02e23",
        "9007199254740993", "9223372036854775807", "-9223372036854775808", "9223372036854775808",
        #""""#, #""plain""#, #""esc \" \\ \/ \b \f \n \r \t""#, #""\u00e9\u4e2d\ud83d\ude00""#,
        "\"caf\u{e9} \u{4e2d}\u{6587} \u{1F600}\"",
        #"[1, 2.5, "x", true, false, null]"#,
        #"{"a": {"b": {"c": [1, [2, [3, {}]]]}}}"#,
        #"  {"pattern":"math.sum","data":[1,2,3],"id":"9f"}  "#,
        #"{"response":{"total":6},"isDisposed":true,"id":"abc"}"#,
        #"{"err":{"message":"boom","status":"error"},"id":"1"}"#,
        "[[[[[[[[[[]]]]]]]]]]",
        #"{"":"","  ":[]}"#,
        "[1e-7, 1.7976931348623157e308, 5e-324, 2.2250738585072014e-308]",
        "[0.1, 0.2, 0.30000000000000004, 123456.789e-3]",
        #"{"k\u0000ey": "nul\u0000inside"}"#,
        "[\"\\u001f\", \"\\u007f\", \"\u{7f}\"]",
        #"{"nested":[{"a":1},{"b":[true,{"c":null}]}]}"#,
        "\t[\r\n1\r\n]\n",
        "[-1.0, -0.0, 100, 1e2, 1.5E+2, 1e-2]",
        #"{"unicode\u00e9key":"v","emoji😀":"\ud83d\ude00"}"#,
        #"["/path/to/file", "http:\/\/x"]"#,
        #"{"a":[],"b":{},"c":[{}],"d":[[]],"e":{"f":{}}}"#,
        "[9999999999999999999, -9999999999999999999, 18446744073709551615]",
    ]

    @Test("our parser and JSONSerialization agree", arguments: documents)
    func agrees(_ document: String) throws {
        let ours = try JSONValue(parsing: document)
        let theirs = try JSONSerialization.jsonObject(with: Data(document.utf8), options: [.fragmentsAllowed])
        #expect(Self.matches(ours, theirs), "\(ours) vs \(theirs)")
        // Foundation also accepts what we write.
        let reparsed = try JSONSerialization.jsonObject(with: Data(ours.jsonBytes), options: [.fragmentsAllowed])
        #expect(Self.matches(ours, reparsed))
    }

    /// Structural comparison; Foundation represents booleans as NSNumber with type code "c".
    static func matches(_ ours: JSONValue, _ theirs: Any) -> Bool {
        let number = theirs as? NSNumber
        let isBoolean = number.map { String(cString: $0.objCType) == "c" } ?? false
        switch ours {
        case .null:
            return theirs is NSNull
        case .bool(let value):
            return isBoolean && number?.boolValue == value
        case .integer(let value):
            return !isBoolean && number?.int64Value == value && number?.doubleValue == Double(value)
        case .double(let value):
            guard !isBoolean, let theirs = number?.doubleValue else { return false }
            // Foundation keeps some literals as NSDecimalNumber, whose conversion to Double is not correctly
            // rounded (0.30000000000000004 comes out one ulp high), so allow one ulp there only.
            if number is NSDecimalNumber {
                return theirs == value || theirs == value.nextUp || theirs == value.nextDown
            }
            return theirs == value
        case .string(let value):
            return (theirs as? String) == value
        case .array(let elements):
            guard let array = theirs as? [Any], array.count == elements.count else { return false }
            return zip(elements, array).allSatisfy { matches($0, $1) }
        case .object(let members):
            guard let dictionary = theirs as? [String: Any], dictionary.count == members.count else { return false }
            return members.allSatisfy { key, value in dictionary[key].map { matches(value, $0) } ?? false }
        }
    }
}

// MARK: - Differential checks

@Suite("Scanner and parser consistency", .cpuBound)
struct JSONConsistencyTests {
    /// A small deterministic generator (SplitMix64), so failures reproduce.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var mixed = state
            mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
            mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
            return mixed ^ (mixed >> 31)
        }
    }

    static let seeds: [String] = [
        #"{"pattern":{"cmd":"sum"},"data":[1,-2.5e3,true,null,"x\u00e9\n"],"id":"7c"}"#,
        #"[0,-0,1.5,"abcdefghijklmnop\"qrstuvwxyz","é😀",{},[],{"a":{"b":[false]}}]"#,
        #""a long string with an escape \ud83d\ude00 and some more ascii text after it""#,
    ]

    /// Bytes that tend to turn valid JSON into nearly-valid JSON.
    static let interesting: [UInt8] =
        Array(#"{}[]",:\/-+.0123456789eEtfnu "#.utf8) + [0x00, 0x1F, 0x7F, 0x80, 0xC3, 0xED, 0xF4, 0xFF]

    @Test("scanValue and the tree parser accept and reject the same mutated documents", arguments: [1, 2, 3, 4])
    func agreeOnMutations(_ seed: UInt64) throws {
        var random = SplitMix(state: seed)
        var accepted = 0
        for _ in 0..<2_000 {
            var bytes = Array(Self.seeds.randomElement(using: &random)!.utf8)
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let position = Int.random(in: 0..<bytes.count, using: &random)
                let byte = Self.interesting.randomElement(using: &random)!
                switch Int.random(in: 0..<3, using: &random) {
                case 0: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                default: if bytes.count > 1 { bytes.remove(at: position) }
                }
            }
            let parsed = try? JSONValue(parsing: bytes)
            let scanned: Void? = try? scanDocument(bytes)
            #expect((parsed != nil) == (scanned != nil), "\(String(decoding: bytes, as: UTF8.self))")
            if let parsed {
                accepted += 1
                // Whatever is accepted round-trips through the writer.
                #expect(try JSONValue(parsing: parsed.jsonBytes) == parsed)
            }
        }
        // Make sure the mutations exercise both outcomes.
        #expect(accepted > 0 && accepted < 2_000)
    }
}
