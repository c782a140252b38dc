//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierTestSupport
import Foundation
import Testing

@testable import CourierCore

// The fast coders are checked against Foundation itself: whatever Foundation's coders do on this platform is the
// specification, so every comparison runs both.

// MARK: - Helpers

private func foundationEncode<T: Encodable>(_ value: T) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    return Array(try encoder.encode(value))
}

private func foundationDecode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
    try JSONDecoder().decode(type, from: Data(bytes))
}

private func fastEncode<T: Encodable>(_ value: T) throws -> [UInt8] {
    try CourierJSONEncoder().encode(value)
}

private func fastDecode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
    try bytes.withUnsafeBytes { try CourierJSONDecoder().decode(type, from: $0) }
}

private func fastDecode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
    try fastDecode(type, Array(text.utf8))
}

private func text(_ bytes: [UInt8]) -> String {
    String(decoding: bytes, as: UTF8.self)
}

/// Checks that both encoders write the same JSON up to member order, and that the fast decoder reads Foundation's
/// output (and its own) back as the original value.
///
/// "Same up to member order" is checked two ways: both documents parse to equal ``JSONValue``s (numbers compare by
/// their text's kind and value, so `1` versus `1.0` would differ), and both hold the same bytes in some order,
/// which reordering members preserves but any formatting difference breaks.
private func expectSameAsFoundation<T: Codable & Equatable>(
    _ value: T,
    sourceLocation: SourceLocation = #_sourceLocation
) throws {
    let fast = try fastEncode(value)
    let reference = try foundationEncode(value)
    #expect(
        try JSONValue(parsing: fast) == JSONValue(parsing: reference),
        "fast \(text(fast)) vs Foundation \(text(reference))",
        sourceLocation: sourceLocation
    )
    #expect(
        fast.sorted() == reference.sorted(),
        "fast \(text(fast)) vs Foundation \(text(reference))",
        sourceLocation: sourceLocation
    )
    #expect(try fastDecode(T.self, reference) == value, "decoding \(text(reference))", sourceLocation: sourceLocation)
    #expect(try fastDecode(T.self, fast) == value, "decoding \(text(fast))", sourceLocation: sourceLocation)
    #expect(
        try foundationDecode(T.self, fast) == value,
        "Foundation decoding \(text(fast))",
        sourceLocation: sourceLocation
    )
}

/// A `DecodingError` reduced to what must agree with Foundation: the case and the coding path.
private struct ErrorShape: Equatable, CustomStringConvertible {
    var kind: String
    var path: [String]

    init(_ error: any Error) {
        guard let error = error as? DecodingError else {
            kind = "not a DecodingError: \(error)"
            path = []
            return
        }
        let context: DecodingError.Context
        switch error {
        case .typeMismatch(_, let value): (kind, context) = ("typeMismatch", value)
        case .valueNotFound(_, let value): (kind, context) = ("valueNotFound", value)
        case .keyNotFound(let key, let value): (kind, context) = ("keyNotFound(\(key.stringValue))", value)
        case .dataCorrupted(let value): (kind, context) = ("dataCorrupted", value)
        @unknown default: (kind, context) = ("unknown", DecodingError.Context(codingPath: [], debugDescription: ""))
        }
        path = context.codingPath.map { key in key.intValue.map { "[\($0)]" } ?? key.stringValue }
    }

    var description: String { "\(kind) at \(path)" }
}

/// Decodes `json` with both decoders and checks they agree: the same value, or the same error case and path.
private func expectSameDecoding<T: Decodable & Equatable>(
    _ type: T.Type,
    _ json: String,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    let bytes = Array(json.utf8)
    let reference = Result { try foundationDecode(type, bytes) }
    let fast = Result { try fastDecode(type, bytes) }
    switch (reference, fast) {
    case (.success(let expected), .success(let actual)):
        #expect(actual == expected, "\(json)", sourceLocation: sourceLocation)
    case (.failure(let expected), .failure(let actual)):
        #expect(ErrorShape(actual) == ErrorShape(expected), "\(json): \(actual)", sourceLocation: sourceLocation)
    case (.success(let expected), .failure(let actual)):
        Issue.record("\(json): Foundation decoded \(expected), fast threw \(actual)", sourceLocation: sourceLocation)
    case (.failure(let expected), .success(let actual)):
        Issue.record("\(json): Foundation threw \(expected), fast decoded \(actual)", sourceLocation: sourceLocation)
    }
}

private func isUnsupported(_ error: (any Error)?) -> Bool {
    if case .unsupported = error as? CourierJSONCodingError { true } else { false }
}

// MARK: - Fixtures

private struct Address: Codable, Equatable {
    var street: String
    var zip: String?
    var unit: Int?
}

private struct Person: Codable, Equatable {
    var name: String
    var age: Int
    var email: String?
    var address: Address?
    var tags: [String]
    var scores: [Double]
    var active: Bool
}

private enum Color: String, Codable, Equatable, CaseIterable {
    case red, green, blue
}

private enum Priority: Int, Codable, Equatable {
    case low = 1
    case high = 10
}

private indirect enum Shape: Codable, Equatable {
    case circle(radius: Double)
    case rectangle(width: Int, height: Int)
    case point
    case labeled(String, Int?)
    case nested(Shape?)
}

private struct Integers: Codable, Equatable {
    var int: Int
    var int8: Int8
    var int16: Int16
    var int32: Int32
    var int64: Int64
    var uint: UInt
    var uint8: UInt8
    var uint16: UInt16
    var uint32: UInt32
    var uint64: UInt64

    static let minimum = Integers(
        int: .min,
        int8: .min,
        int16: .min,
        int32: .min,
        int64: .min,
        uint: .min,
        uint8: .min,
        uint16: .min,
        uint32: .min,
        uint64: .min
    )
    static let maximum = Integers(
        int: .max,
        int8: .max,
        int16: .max,
        int32: .max,
        int64: .max,
        uint: .max,
        uint8: .max,
        uint16: .max,
        uint32: .max,
        uint64: .max
    )
}

private struct WideIntegers: Codable, Equatable {
    var signed: Int128
    var unsigned: UInt128
}

private struct Floats: Codable, Equatable {
    var double: Double
    var float: Float
}

private struct Empty: Codable, Equatable {}

private struct Wrapper<Value: Codable & Equatable>: Codable, Equatable {
    var value: Value
}

/// A base class whose subclass stores it under `super`, the way `superEncoder()` is meant to be used.
private class Animal: Codable, Equatable {
    var name: String
    var legs: Int

    init(name: String, legs: Int) {
        self.name = name
        self.legs = legs
    }

    static func == (lhs: Animal, rhs: Animal) -> Bool {
        type(of: lhs) == type(of: rhs) && lhs.name == rhs.name && lhs.legs == rhs.legs && lhs.isEqual(to: rhs)
    }

    func isEqual(to other: Animal) -> Bool { true }
}

private final class Dog: Animal {
    var breed: String

    init(name: String, breed: String) {
        self.breed = breed
        super.init(name: name, legs: 4)
    }

    private enum CodingKeys: String, CodingKey { case breed }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        breed = try container.decode(String.self, forKey: .breed)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(breed, forKey: .breed)
        try super.encode(to: container.superEncoder())
    }

    override func isEqual(to other: Animal) -> Bool { (other as? Dog)?.breed == breed }
}

/// A subclass that shares its encoder with the base class, so both write into one object.
private final class Cat: Animal {
    var indoor: Bool

    init(name: String, indoor: Bool) {
        self.indoor = indoor
        super.init(name: name, legs: 4)
    }

    private enum CodingKeys: String, CodingKey { case indoor }

    required init(from decoder: any Decoder) throws {
        indoor = try decoder.container(keyedBy: CodingKeys.self).decode(Bool.self, forKey: .indoor)
        try super.init(from: decoder)
    }

    override func encode(to encoder: any Encoder) throws {
        try super.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(indoor, forKey: .indoor)
    }

    override func isEqual(to other: Animal) -> Bool { (other as? Cat)?.indoor == indoor }
}

/// Hand-written coding that uses every kind of container, nested in every way.
private struct Mixed: Codable, Equatable {
    var id: Int
    var matrix: [[Int]]
    var meta: [String: String]
    var point: (x: Double, y: Double)
    var note: String?
    var parent: Animal

    static func == (lhs: Mixed, rhs: Mixed) -> Bool {
        lhs.id == rhs.id && lhs.matrix == rhs.matrix && lhs.meta == rhs.meta && lhs.point == rhs.point
            && lhs.note == rhs.note && lhs.parent == rhs.parent
    }

    private enum Keys: String, CodingKey { case id, matrix, meta, point, note, parent, extra }
    private enum PointKeys: String, CodingKey { case x, y }

    init(id: Int, matrix: [[Int]], meta: [String: String], point: (Double, Double), note: String?, parent: Animal) {
        self.id = id
        self.matrix = matrix
        self.meta = meta
        self.point = point
        self.note = note
        self.parent = parent
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(id, forKey: .id)
        var rows = container.nestedUnkeyedContainer(forKey: .matrix)
        for row in matrix {
            var nested = rows.nestedUnkeyedContainer()
            for value in row {
                try nested.encode(value)
            }
        }
        var point = container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        try point.encode(self.point.x, forKey: .x)
        try point.encode(self.point.y, forKey: .y)
        try container.encode(meta, forKey: .meta)
        if let note {
            try container.encode(note, forKey: .note)
        } else {
            try container.encodeNil(forKey: .note)
        }
        try parent.encode(to: container.superEncoder(forKey: .parent))
        var extra = container.nestedUnkeyedContainer(forKey: .extra)
        var first = extra.nestedContainer(keyedBy: PointKeys.self)
        try first.encode(1.5, forKey: .x)
        try extra.encodeNil()
        try Wrapper(value: "w").encode(to: extra.superEncoder())
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Keys.self)
        id = try container.decode(Int.self, forKey: .id)
        var rows = try container.nestedUnkeyedContainer(forKey: .matrix)
        var matrix: [[Int]] = []
        while !rows.isAtEnd {
            var nested = try rows.nestedUnkeyedContainer()
            var row: [Int] = []
            row.reserveCapacity(nested.count ?? 0)
            while !nested.isAtEnd {
                row.append(try nested.decode(Int.self))
            }
            matrix.append(row)
        }
        self.matrix = matrix
        let point = try container.nestedContainer(keyedBy: PointKeys.self, forKey: .point)
        self.point = (try point.decode(Double.self, forKey: .x), try point.decode(Double.self, forKey: .y))
        meta = try container.decode([String: String].self, forKey: .meta)
        note = try container.decodeNil(forKey: .note) ? nil : try container.decode(String.self, forKey: .note)
        parent = try Animal(from: container.superDecoder(forKey: .parent))
        var extra = try container.nestedUnkeyedContainer(forKey: .extra)
        #expect(extra.count == 3)
        _ = try extra.nestedContainer(keyedBy: PointKeys.self)
        #expect(try extra.decodeNil())
        _ = try Wrapper<String>(from: extra.superDecoder())
        #expect(extra.isAtEnd)
    }
}

/// A value that delegates to another through a single value container.
private struct Tagged: Codable, Equatable {
    var inner: Person

    init(inner: Person) {
        self.inner = inner
    }

    init(from decoder: any Decoder) throws {
        inner = try decoder.singleValueContainer().decode(Person.self)
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(inner)
    }
}

private let ada = Person(
    name: "Ada",
    age: 36,
    email: nil,
    address: Address(street: "12 St James's Square", zip: "SW1Y 4JH", unit: nil),
    tags: ["math", "engines"],
    scores: [0.1, 1e300, -0.0],
    active: true
)

// MARK: - Encoding and decoding

@Suite("Fast Codable JSON agrees with Foundation", .cpuBound)
struct CodableJSONAgreementTests {
    @Test func nestedStructsWithOptionals() throws {
        try expectSameAsFoundation(ada)
        try expectSameAsFoundation(
            Person(name: "", age: 0, email: "e@x", address: nil, tags: [], scores: [], active: false)
        )
        try expectSameAsFoundation([ada, ada])
        try expectSameAsFoundation(Address(street: "s", zip: nil, unit: 3))
    }

    @Test func enumsWithRawValues() throws {
        try expectSameAsFoundation(Color.allCases)
        try expectSameAsFoundation(Color.green)
        try expectSameAsFoundation([Priority.low, .high])
        try expectSameAsFoundation(["a": Color.red])
    }

    @Test(arguments: [
        Shape.circle(radius: 1.5), .rectangle(width: 2, height: -3), .point, .labeled("x", nil), .labeled("y", 7),
        .nested(.nested(.point)), .nested(nil),
    ])
    fileprivate func enumsWithAssociatedValues(_ shape: Shape) throws {
        try expectSameAsFoundation(shape)
        try expectSameAsFoundation(Wrapper(value: shape))
    }

    @Test func arraysAndDictionaries() throws {
        try expectSameAsFoundation([Address(street: "a", zip: "1", unit: nil), Address(street: "b", zip: nil, unit: 2)])
        try expectSameAsFoundation(["one": 1, "two": 2, "three": 3])
        try expectSameAsFoundation(["list": [1, 2], "empty": []])
        try expectSameAsFoundation([1: "one", -2: "minus two"])
        try expectSameAsFoundation(["people": [ada]])
        try expectSameAsFoundation([[1, 2], [], [3]])
        try expectSameAsFoundation([Int?.none, 1, nil])
        try expectSameAsFoundation(Set([1, 2, 3]))
        // Dictionaries large enough to use the hashed key paths of both coders.
        let large = Dictionary(uniqueKeysWithValues: (0..<100).map { ("key\($0)", $0) })
        try expectSameAsFoundation(large)
        try expectSameAsFoundation(Dictionary(uniqueKeysWithValues: (0..<40).map { ($0, "\($0)") }))
    }

    @Test func integersAtTheirLimits() throws {
        try expectSameAsFoundation(Integers.minimum)
        try expectSameAsFoundation(Integers.maximum)
        try expectSameAsFoundation([Int8.min, 0, .max])
        try expectSameAsFoundation([UInt64.max, 0])
        try expectSameAsFoundation(WideIntegers(signed: .min, unsigned: .max))
        try expectSameAsFoundation(WideIntegers(signed: .max, unsigned: 0))
    }

    @Test(
        arguments: [
            0.1, 1e300, -0.0, .leastNonzeroMagnitude, 0, 1, -1, 1.5, 1e16, 1e15, 123456.789, 0.1 + 0.2, 1e-7,
            .greatestFiniteMagnitude,
            -.greatestFiniteMagnitude, .leastNormalMagnitude, 9_007_199_254_740_994, 2.5e-308, 4.35, 100,
        ] as [Double]
    )
    func doubles(_ value: Double) throws {
        // Arrays have a fixed order, so the bytes must match exactly.
        #expect(text(try fastEncode([value])) == text(try foundationEncode([value])))
        #expect(text(try fastEncode(value)) == text(try foundationEncode(value)))
        try expectSameAsFoundation(Floats(double: value, float: Float(value).nonInfinite))
        let decoded = try fastDecode(Double.self, try foundationEncode(value))
        #expect(decoded.bitPattern == value.bitPattern, "\(value) came back as \(decoded)")
    }

    @Test func floats() throws {
        let values: [Float] = [0.1, 1e10, 16_777_216, 3.4e38, .leastNonzeroMagnitude, -0.0, .leastNormalMagnitude, 0.3]
        #expect(text(try fastEncode(values)) == text(try foundationEncode(values)))
        #expect(
            try fastDecode([Float].self, try foundationEncode(values)).map(\.bitPattern) == values.map(\.bitPattern)
        )
    }

    @Test(arguments: [
        "", "plain", "quote \" backslash \\ slash /", "tab\tnewline\ncarriage\rback\u{8}form\u{C}",
        String((0..<32).map { Character(Unicode.Scalar($0)!) }), "del \u{7F} nbsp \u{A0} ls \u{2028} ps \u{2029}",
        "emoji 😀👩‍👩‍👧 flags 🇳🇿", "combining é vs é", "中文 русский عربى", "\u{FEFF}bom", "\0nul",
    ])
    func strings(_ value: String) throws {
        #expect(text(try fastEncode([value])) == text(try foundationEncode([value])))
        try expectSameAsFoundation(Wrapper(value: value))
        try expectSameAsFoundation(value)
        // Keys are escaped like values.
        try expectSameAsFoundation([value: value])
    }

    @Test func emptyContainers() throws {
        try expectSameAsFoundation(Empty())
        try expectSameAsFoundation([Empty(), Empty()])
        try expectSameAsFoundation(Wrapper(value: Empty()))
        try expectSameAsFoundation([Int]())
        try expectSameAsFoundation([String: Int]())
        try expectSameAsFoundation([[Int]]())
        try expectSameAsFoundation(Wrapper(value: [String: [Int]]()))
    }

    @Test func topLevelFragments() throws {
        try expectSameAsFoundation(42)
        try expectSameAsFoundation(-7 as Int8)
        try expectSameAsFoundation("fragment")
        try expectSameAsFoundation(true)
        try expectSameAsFoundation(2.5)
        try expectSameAsFoundation(Int?.none)
        try expectSameAsFoundation(Int?.some(3))
        try expectSameAsFoundation(UInt64.max)
    }

    @Test func classesWithSuperEncoderAndSuperDecoder() throws {
        try expectSameAsFoundation(Dog(name: "Rex", breed: "collie") as Dog)
        try expectSameAsFoundation(Cat(name: "Tom", indoor: true) as Cat)
        try expectSameAsFoundation(Animal(name: "Snail", legs: 0))
        try expectSameAsFoundation([Dog(name: "a", breed: "b"), Dog(name: "c", breed: "d")])
        #expect(
            text(try fastEncode(Dog(name: "Rex", breed: "collie")))
                == #"{"breed":"collie","super":{"name":"Rex","legs":4}}"#
        )
    }

    @Test func customCodingThatMixesContainers() throws {
        let value = Mixed(
            id: 7,
            matrix: [[1, 2], [], [3]],
            meta: ["k": "v"],
            point: (0.5, -2),
            note: nil,
            parent: Animal(name: "Rex", legs: 3)
        )
        try expectSameAsFoundation(value)
        // A subclass written through superEncoder(forKey:) nests its own superEncoder value.
        let withDog = Mixed(
            id: 1,
            matrix: [[1]],
            meta: [:],
            point: (0, 0),
            note: nil,
            parent: Dog(name: "Rex", breed: "collie")
        )
        let reference = try foundationEncode(withDog)
        let fast = try fastEncode(withDog)
        #expect(try JSONValue(parsing: fast) == JSONValue(parsing: reference), "\(text(fast)) vs \(text(reference))")
        #expect(fast.sorted() == reference.sorted())
        try expectSameAsFoundation(
            Mixed(id: -1, matrix: [], meta: [:], point: (1e300, 0), note: "n", parent: Animal(name: "x", legs: 2))
        )
    }

    @Test func singleValueDelegation() throws {
        try expectSameAsFoundation(Tagged(inner: ada))
        try expectSameAsFoundation([Tagged(inner: ada)])
    }

    @Test func foundationTypesThatNeedNoSpecialCase() throws {
        try expectSameAsFoundation(Date(timeIntervalSinceReferenceDate: 1.5))
        try expectSameAsFoundation(Wrapper(value: Date(timeIntervalSinceReferenceDate: -1e9)))
        try expectSameAsFoundation(UUID(uuidString: "E621E1F8-C36C-495A-93FC-0C247A3E6E5F")!)
    }

    @Test func jsonValuesNestInsideCodableValues() throws {
        let value = Wrapper<JSONValue>(value: ["b": [1, "two", nil], "a": true, "c": 2.5])
        #expect(text(try fastEncode(value)) == #"{"value":{"a":true,"b":[1,"two",null],"c":2.5}}"#)
        #expect(try fastDecode(Wrapper<JSONValue>.self, try fastEncode(value)) == value)
        #expect(try fastDecode(Wrapper<JSONValue>.self, try foundationEncode(value)) == value)
    }

    @Test func keysComeInTheOrderTheyAreWritten() throws {
        let expected =
            #"{"name":"Ada","age":36,"address":{"street":"12 St James's Square","zip":"SW1Y 4JH"},"#
            + #""tags":["math","engines"],"scores":[0.1,1e+300,-0],"active":true}"#
        #expect(text(try fastEncode(ada)) == expected)
    }
}

// MARK: - Decoding

/// Decoding reads the document's own layout: whitespace, escapes, member order and repeated keys.
private struct Probe: Codable, Equatable {
    var id: Int
    var name: String
    var ratio: Double?
}

/// Reads containers through their introspection API, to compare it with Foundation's.
private struct Introspection: Decodable, Equatable {
    var keys: [String]
    var containsMissing: Bool
    var count: Int?
    var elements: [Int]
    var nilWasNull: Bool
    var superValue: Int?
    var superMissing: Bool

    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        keys = container.allKeys.map(\.stringValue).sorted()
        containsMissing = container.contains(AnyKey(stringValue: "missing"))
        var list = try container.nestedUnkeyedContainer(forKey: AnyKey(stringValue: "list"))
        count = list.count
        var elements: [Int] = []
        var sawNull = false
        while !list.isAtEnd {
            if try list.decodeNil() {
                sawNull = true
            } else {
                elements.append(try list.decode(Int.self))
            }
        }
        self.elements = elements
        nilWasNull = sawNull
        superValue = try? container.superDecoder().singleValueContainer().decode(Int.self)
        superMissing = try container.superDecoder(forKey: AnyKey(stringValue: "absent")).singleValueContainer()
            .decodeNil()
    }
}

@Suite("Fast decoding agrees with Foundation", .cpuBound)
struct CodableJSONDecodingTests {
    @Test(arguments: [
        #"{"id":1,"name":"a"}"#,
        " \n{ \"name\" : \"b\" , \"id\" : 2 , \"ratio\" : 0.5 }\t",
        #"{"id":3,"name":"\u0041\n\ud83d\ude00","ratio":null}"#,
        #"{"id":4,"id":5,"name":"first wins","name":"second"}"#,
        #"{"\u0069d":6,"name":"escaped key","extra":{"deep":[1,{"x":null}]}}"#,
        #"{"id":7.0,"name":"integral double","ratio":7}"#,
        #"{"id":1e2,"name":"exponent","ratio":-1E-2}"#,
        // Members that are skipped over: escaped quotes and backslashes, brackets inside strings, bare scalars.
        #"{"skip":"a\"b\\","id":8,"name":"x\\"}"#,
        #"{"skip":[{"a":"]}"},"}",[]],"id":9,"name":"brackets in strings"}"#,
        #"{"id":10,"name":"n","skip":-1.5e-3,"also":true,"last":null}"#,
        "\t{\"id\" :11 ,\"name\":\"ws\" ,\"ratio\": 2 }\n",
    ])
    func validDocuments(_ json: String) {
        expectSameDecoding(Probe.self, json)
    }

    @Test func introspection() {
        expectSameDecoding(Introspection.self, #"{"b":1,"a":2,"list":[1,null,3],"super":9,"b":3}"#)
        expectSameDecoding(Introspection.self, #"{"list":[]}"#)
    }

    @Test(arguments: [
        "0", "-0", "255", "256", "-1", "1.0", "1.5", "1e2", "1E+2", "25e-1", "-128", "127", "1e30",
        "99999999999999999999", "0.0", "-0.0",
    ])
    func integerConversions(_ number: String) {
        expectSameDecoding(Int8.self, number)
        expectSameDecoding(UInt8.self, number)
        expectSameDecoding([Int].self, "[\(number)]")
        expectSameDecoding(Wrapper<UInt64>.self, #"{"value":\#(number)}"#)
    }

    @Test(arguments: [
        "9223372036854775807", "9223372036854775808", "-9223372036854775808", "-9223372036854775809",
        "9223372036854775807.0", "-9223372036854775808.0", "12345678901234567.5", "1.2345678901234567e16",
        "18446744073709551615", "18446744073709551616", "1e19", "9007199254740993.0",
    ])
    func largeIntegerConversions(_ number: String) {
        expectSameDecoding(Int64.self, number)
        expectSameDecoding(UInt64.self, number)
        expectSameDecoding(Int.self, number)
    }

    @Test(arguments: [
        "0", "1", "-0", "0.1", "1e300", "1e400", "-1e400", "1e-400", "5e-324", "1e-320", "3.4028235e38", "3.5e38",
        "1e-46", "0e10", "123456789012345678901234567890", "2.2250738585072011e-308", "0.30000000000000004",
        "1.7976931348623157e308", "1.7976931348623159e308", "4.9406564584124654e-324",
    ])
    func floatingPointConversions(_ number: String) {
        expectSameDecoding(Double.self, number)
        expectSameDecoding(Float.self, number)
        expectSameDecoding(Wrapper<Double>.self, #"{"value":\#(number)}"#)
    }

    @Test func mismatchedTypesAndMissingValues() {
        expectSameDecoding(Probe.self, #"{"id":"1","name":"a"}"#)
        expectSameDecoding(Probe.self, #"{"id":null,"name":"a"}"#)
        expectSameDecoding(Probe.self, #"{"name":"a"}"#)
        expectSameDecoding(Probe.self, #"{"id":1,"name":2}"#)
        expectSameDecoding(Probe.self, #"{"id":1,"name":"a","ratio":"x"}"#)
        expectSameDecoding(Probe.self, #"[1]"#)
        expectSameDecoding(Probe.self, #"null"#)
        expectSameDecoding([Probe].self, #"[{"id":1,"name":"a"},{"id":2}]"#)
        expectSameDecoding([Probe].self, #"{"id":1}"#)
        expectSameDecoding([Probe].self, #"null"#)
        expectSameDecoding([Int].self, #"[1,null]"#)
        expectSameDecoding([Int].self, #"[1,"2"]"#)
        expectSameDecoding([Bool].self, #"[true,1]"#)
        expectSameDecoding([Bool].self, #"[null]"#)
        expectSameDecoding([String: [Int]].self, #"{"a":[1],"b":[true]}"#)
        expectSameDecoding([Int: String].self, #"{"1":"a","x":"b"}"#)
        expectSameDecoding([Int: String].self, #"{"1":"a","2":"b"}"#)
        expectSameDecoding(
            Person.self,
            #"{"name":"a","age":1,"address":{"street":5},"tags":[],"scores":[],"active":true}"#
        )
        expectSameDecoding(Person.self, #"{"name":"a","age":1,"address":{},"tags":[],"scores":[],"active":true}"#)
        expectSameDecoding(Person.self, #"{"name":"a","age":1,"tags":[null],"scores":[],"active":true}"#)
        expectSameDecoding(Color.self, #""purple""#)
        expectSameDecoding(Priority.self, #"5"#)
        expectSameDecoding(Shape.self, #"{"circle":{"radius":"big"}}"#)
        expectSameDecoding(Shape.self, #"{"triangle":{}}"#)
        expectSameDecoding(Shape.self, #"{"circle":{"radius":1},"point":{}}"#)
        expectSameDecoding(Integers.self, #"{"int":1}"#)
        expectSameDecoding(Empty.self, #"[]"#)
        expectSameDecoding(Empty.self, #"{"anything":[1,2,{"x":null}]}"#)
        expectSameDecoding(Dog.self, #"{"breed":"b"}"#)
        expectSameDecoding(Dog.self, #"{"breed":"b","super":{"name":"n"}}"#)
        expectSameDecoding(Int?.self, "null")
        expectSameDecoding(String.self, "null")
        expectSameDecoding(Bool.self, "null")
    }

    @Test func unkeyedContainerAtItsEnd() {
        struct Pair: Decodable, Equatable {
            var first: Int
            var second: Int
            init(from decoder: any Decoder) throws {
                var container = try decoder.unkeyedContainer()
                first = try container.decode(Int.self)
                second = try container.decode(Int.self)
            }
        }
        struct NilAtEnd: Decodable, Equatable {
            init(from decoder: any Decoder) throws {
                var container = try decoder.unkeyedContainer()
                _ = try container.decodeNil()
            }
        }
        expectSameDecoding(Pair.self, "[1,2]")
        expectSameDecoding(Pair.self, "[1]")
        expectSameDecoding([Pair].self, "[[1,2],[3]]")
        expectSameDecoding(NilAtEnd.self, "[]")
    }

    @Test(arguments: ["", " ", "{", "[1 2]", "{\"a\":1} x", "nul", "\"\\x\"", "[01]", "[\"\u{1}\"]", "{\"a\"}"])
    func invalidJSON(_ json: String) throws {
        // The fast decoder validates the whole document first, strictly. Foundation checks number syntax and string
        // escapes only in the values it decodes, so it may report these as type mismatches instead; PayloadCoder
        // hands invalid documents to Foundation so that callers keep seeing Foundation's result.
        for decode in [{ _ = try fastDecode(Int.self, json) }, { _ = try fastDecode([Int].self, json) }] {
            let error = #expect(throws: DecodingError.self) { try decode() }
            #expect(
                ErrorShape(error!)
                    == ErrorShape(DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "")))
            )
            guard case .dataCorrupted(let context) = error else { continue }
            #expect(context.underlyingError is JSONError)
        }
        #expect(throws: (any Error).self) { try foundationDecode([Int].self, Array(json.utf8)) }
    }

    @Test func trailingCommasAreRejected() throws {
        // Foundation accepts a trailing comma in an array; the strict scanner does not.
        #expect(try foundationDecode([Int].self, Array("[1,]".utf8)) == [1])
        let error = #expect(throws: DecodingError.self) { try fastDecode([Int].self, "[1,]") }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(context.underlyingError is JSONError)
    }

    @Test func numberErrorsNameTheirLocation() throws {
        let error = #expect(throws: DecodingError.self) { try fastDecode(Wrapper<[UInt8]>.self, #"{"value":[1,300]}"#) }
        guard case .dataCorrupted(let context) = error else {
            Issue.record("expected dataCorrupted, got \(String(describing: error))")
            return
        }
        #expect(context.debugDescription.contains("300 at .value[1]"), "\(context.debugDescription)")
    }
}

// MARK: - Errors and fallbacks

private struct Interleaved: Encodable {
    enum Keys: String, CodingKey { case a, b, x }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var first = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        var second = container.nestedContainer(keyedBy: Keys.self, forKey: .b)
        try second.encode(2, forKey: .x)
        try first.encode(1, forKey: .x)
    }
}

private struct RepeatedKey: Encodable {
    enum Keys: String, CodingKey { case a }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(1, forKey: .a)
        try container.encode(2, forKey: .a)
    }
}

private struct ReopenedNested: Encodable {
    enum Keys: String, CodingKey { case a, x, y }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        var first = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        try first.encode(1, forKey: .x)
        var again = container.nestedContainer(keyedBy: Keys.self, forKey: .a)
        try again.encode(2, forKey: .y)
    }
}

/// Swallows an error from the encoder and carries on, which Foundation tolerates but a stream cannot.
private struct SwallowsErrors: Encodable {
    enum Keys: String, CodingKey { case bad, good }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try? container.encode(Wrapper(value: Double.nan), forKey: .bad)
        try container.encode(1, forKey: .good)
    }
}

private struct NothingEncoded: Encodable {
    func encode(to encoder: any Encoder) throws {}
}

@Suite("Fast coder errors and Foundation fallbacks")
struct CodableJSONErrorTests {
    @Test func nonFiniteNumbersThrowInvalidValueWithTheirPath() throws {
        for value in [Double.nan, .infinity, -.infinity] {
            for encode in [
                { try fastEncode(Wrapper(value: [1, value])) }, { try foundationEncode(Wrapper(value: [1, value])) },
            ] {
                let error = #expect(throws: EncodingError.self) { try encode() }
                guard case .invalidValue(_, let context) = error else {
                    Issue.record("expected invalidValue, got \(String(describing: error))")
                    continue
                }
                #expect(context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue } == ["value", "1"])
            }
        }
        #expect(throws: EncodingError.self) { try fastEncode(Float.infinity) }
        #expect(throws: EncodingError.self) { try fastEncode(Floats(double: 1, float: .nan)) }
    }

    @Test func topLevelValueThatEncodesNothing() throws {
        #expect(throws: EncodingError.self) { try fastEncode(NothingEncoded()) }
        #expect(throws: EncodingError.self) { try foundationEncode(NothingEncoded()) }
        // Nested, Foundation writes an empty object.
        #expect(text(try fastEncode([NothingEncoded()])) == text(try foundationEncode([NothingEncoded()])))
    }

    @Test func foundationSpecialTypesAreLeftToFoundation() throws {
        #expect(FoundationSpecialTypes.contains(Data.self))
        #expect(FoundationSpecialTypes.contains(URL.self))
        #expect(FoundationSpecialTypes.contains(Decimal.self))
        #expect(!FoundationSpecialTypes.contains(Date.self))
        #expect(!FoundationSpecialTypes.contains([Data].self))

        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(Data([1, 2])) }))
        #expect(
            isUnsupported(
                #expect(throws: CourierJSONCodingError.self) {
                    try fastEncode(Wrapper(value: [URL(string: "https://x/")!]))
                }
            )
        )
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(["d": Decimal(1)]) }))
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastDecode(Data.self, #""AQI=""#) }))
        #expect(
            isUnsupported(
                #expect(throws: CourierJSONCodingError.self) {
                    try fastDecode(Wrapper<URL>.self, #"{"value":"https://x/"}"#)
                }
            )
        )
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastDecode([Decimal].self, "[1.5]") }))
    }

    @Test func decodingFailsOverEvenWhenTheTypeCatchesTheError() throws {
        struct Lenient: Decodable {
            var data: Data?
            enum CodingKeys: CodingKey { case data }
            init(from decoder: any Decoder) throws {
                data = try? decoder.container(keyedBy: CodingKeys.self).decode(Data.self, forKey: .data)
            }
        }
        #expect(throws: CourierJSONCodingError.self) { try fastDecode(Lenient.self, #"{"data":"AQI="}"#) }
    }

    @Test func streamingLimitsAreLeftToFoundation() throws {
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(Interleaved()) }))
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(RepeatedKey()) }))
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(ReopenedNested()) }))
        #expect(isUnsupported(#expect(throws: CourierJSONCodingError.self) { try fastEncode(SwallowsErrors()) }))
        // What Foundation makes of them, for the record: later writes win and nested containers merge.
        #expect(try JSONValue(parsing: foundationEncode(Interleaved())) == ["a": ["x": 1], "b": ["x": 2]])
        #expect(try JSONValue(parsing: foundationEncode(RepeatedKey())) == ["a": 2])
        #expect(try JSONValue(parsing: foundationEncode(ReopenedNested())) == ["a": ["x": 1, "y": 2]])
        #expect(try JSONValue(parsing: foundationEncode(SwallowsErrors())) == ["good": 1])
    }

    @Test func codingPathsSeenByEncodableCode() throws {
        struct PathRecorder: Encodable {
            nonisolated(unsafe) static var seen: [[String]] = []
            func encode(to encoder: any Encoder) throws {
                Self.seen.append(encoder.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue })
                var container = encoder.singleValueContainer()
                try container.encode(0)
            }
        }
        let value = ["a": [PathRecorder(), PathRecorder()]]
        PathRecorder.seen = []
        _ = try foundationEncode(value)
        let reference = PathRecorder.seen
        PathRecorder.seen = []
        _ = try fastEncode(value)
        #expect(PathRecorder.seen == reference)
        #expect(reference == [["a", "0"], ["a", "1"]])
    }
}

// MARK: - Randomised round trips

/// SplitMix64: a tiny, well-distributed generator, so failures reproduce from the seed.
private struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

private struct Node: Codable, Equatable {
    var int: Int
    var small: Int8
    var unsigned: UInt32?
    var double: Double
    var float: Float?
    var text: String
    var flag: Bool?
    var color: Color?
    var children: [Node]
    var table: [String: Int]
    var shape: Shape?

    static func random(depth: Int, using generator: inout SeededGenerator) -> Node {
        func chance(_ percent: UInt64) -> Bool { generator.next() % 100 < percent }
        let childCount = depth > 0 ? Int(generator.next() % 3) : 0
        return Node(
            int: Int(truncatingIfNeeded: generator.next()) >> Int(generator.next() % 64),
            small: Int8(truncatingIfNeeded: generator.next()),
            unsigned: chance(70) ? UInt32(truncatingIfNeeded: generator.next()) : nil,
            double: randomDouble(using: &generator),
            float: chance(50) ? Float(randomDouble(using: &generator)).nonInfinite : nil,
            text: randomString(using: &generator),
            flag: chance(60) ? chance(50) : nil,
            color: chance(50) ? Color.allCases.randomElement(using: &generator) : nil,
            children: (0..<childCount).map { _ in random(depth: depth - 1, using: &generator) },
            table: Dictionary(
                (0..<Int(generator.next() % 4)).map { _ in
                    (randomString(using: &generator), Int(generator.next() % 1000))
                },
                uniquingKeysWith: { first, _ in first }
            ),
            shape: chance(40)
                ? [Shape.point, .circle(radius: 0.25), .labeled("l", 3), .rectangle(width: -1, height: 2)]
                    .randomElement(using: &generator) : nil
        )
    }

    static func randomDouble(using generator: inout SeededGenerator) -> Double {
        switch generator.next() % 4 {
        case 0: return Double(Int32(truncatingIfNeeded: generator.next()))
        case 1: return Double(Int64(truncatingIfNeeded: generator.next() % 10_000)) / 100
        default:
            // Any finite bit pattern: subnormals, huge and tiny exponents, negative zero.
            while true {
                let value = Double(bitPattern: generator.next())
                if value.isFinite { return value }
            }
        }
    }

    static func randomString(using generator: inout SeededGenerator) -> String {
        let pool: [Character] = [
            "a", "Z", "0", " ", "\"", "\\", "/", "\n", "\t", "\u{0}", "\u{1F}", "\u{7F}", "é", "€", "😀", "\u{2028}",
            "中",
        ]
        return String((0..<Int(generator.next() % 12)).map { _ in pool[Int(generator.next() % UInt64(pool.count))] })
    }
}

extension Float {
    fileprivate var nonInfinite: Float { isFinite ? self : 1 }
}

@Suite("Randomised round trips", .cpuBound)
struct CodableJSONRandomTests {
    @Test(arguments: [1, 2, 3, 0xC0FFEE] as [UInt64])
    func randomValuesRoundTripAndAgreeWithFoundation(seed: UInt64) throws {
        var generator = SeededGenerator(state: seed)
        for _ in 0..<60 {
            let node = Node.random(depth: 3, using: &generator)
            try expectSameAsFoundation(node)
        }
    }

    @Test func randomDoublesAreFormattedLikeFoundation() throws {
        var generator = SeededGenerator(state: 42)
        let values = (0..<2_000).map { _ in Node.randomDouble(using: &generator) }
        #expect(text(try fastEncode(values)) == text(try foundationEncode(values)))
        let decoded = try fastDecode([Double].self, try foundationEncode(values))
        #expect(decoded.map(\.bitPattern) == values.map { $0 == 0 ? $0.bitPattern : $0.bitPattern })
        let floats = values.map { Float($0).nonInfinite }
        #expect(text(try fastEncode(floats)) == text(try foundationEncode(floats)))
        #expect(
            try fastDecode([Float].self, try foundationEncode(floats)).map(\.bitPattern) == floats.map(\.bitPattern)
        )
    }

    @Test func randomNumberLiteralsDecodeLikeFoundation() throws {
        var generator = SeededGenerator(state: 7)
        for _ in 0..<500 {
            var literal = generator.next() % 2 == 0 ? "-" : ""
            literal += String(generator.next() % 100_000_000_000)
            if generator.next() % 2 == 0 {
                literal += "." + String(generator.next() % 1_000_000).reversed()
            }
            if generator.next() % 3 == 0 {
                literal += "e" + String(Int(generator.next() % 40) - 20)
            }
            expectSameDecoding(Double.self, literal)
            expectSameDecoding(Float.self, literal)
            expectSameDecoding(Int.self, literal)
            expectSameDecoding(Int32.self, literal)
            expectSameDecoding(UInt16.self, literal)
        }
    }
}
