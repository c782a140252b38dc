//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// Turns NestJS object patterns (`{cmd: 'sum'}`) into the route string NestJS uses for lookup and channel names.
///
/// The rule (NestJS v10/v11): strings and numbers become their text; objects become `{"key":value,…}` with keys
/// sorted by JavaScript's `localeCompare`, string values quoted without escaping, nested objects recursing and
/// arrays treated as objects keyed `"0"`, `"1"`, …. Courier approximates ICU's root collation for ASCII keys
/// (punctuation before digits before letters; letters case-insensitively, lowercase first); for other characters
/// it falls back to code-point order. Lowercase ASCII keys are the portable subset.
public enum NestPatternNormalizer {
    /// The route string for a pattern value.
    public static func routeString(for pattern: JSONValue) -> String {
        switch pattern {
        case .string(let text): text
        case .integer(let value): String(value)
        case .double(let value): javaScriptNumber(value)
        case .bool(let value): value ? "true" : "false"
        case .null: "null"
        case .array, .object: objectString(pattern)
        }
    }

    private static func objectString(_ value: JSONValue) -> String {
        let members: [(String, JSONValue)]
        switch value {
        case .object(let object): members = object.map { ($0.key, $0.value) }
        case .array(let array): members = array.enumerated().map { (String($0.offset), $0.element) }
        default: return routeString(for: value)
        }
        let sorted = members.sorted { localeLess($0.0, $1.0) }
        var text = "{"
        for (index, (key, member)) in sorted.enumerated() {
            if index > 0 { text += "," }
            text += "\"\(key)\":"
            switch member {
            case .string(let string): text += "\"\(string)\""
            case .array, .object: text += objectString(member)
            default: text += routeString(for: member)
            }
        }
        return text + "}"
    }

    /// `String(value)` as JavaScript writes it.
    static func javaScriptNumber(_ value: Double) -> String {
        if value == value.rounded(), let integer = Int64(exactly: value) { return String(integer) }
        return javaScriptForm(of: value)
    }

    /// A number that is not an integer in Int64's range, as JavaScript writes it. Both languages write the shortest
    /// digits that round-trip, but they place them differently: Swift switches to an exponent below 1e-4 and from
    /// 2^53 on, and pads it to two digits ("1e-05", "9.223372036854776e+18"), where JavaScript writes decimals from
    /// 1e-6 up to 1e21 and no padding ("0.00001", "1.5e-7", "9223372036854776000"). Swift's digits, placed by
    /// JavaScript's rules.
    private static func javaScriptForm(of value: Double) -> String {
        let text = String(value)
        guard value.isFinite, let e = text.firstIndex(of: "e"),
            let exponent = Int(text[text.index(after: e)...].drop { $0 == "+" })
        else { return text }
        let sign = value < 0 ? "-" : ""
        let digits = String(text[..<e].filter { $0 != "." && $0 != "-" })
        // The value is 0.digits × 10^point.
        let point = exponent + 1
        if point <= 0, point > -6 {
            return sign + "0." + String(repeating: "0", count: -point) + digits
        }
        if point > 0, point <= 21 {
            if point >= digits.count { return sign + digits + String(repeating: "0", count: point - digits.count) }
            return sign + digits.prefix(point) + "." + digits.dropFirst(point)
        }
        let mantissa = digits.count == 1 ? digits : digits.prefix(1) + "." + digits.dropFirst()
        return sign + mantissa + "e" + (exponent < 0 ? "-" : "+") + String(abs(exponent))
    }

    /// An approximation of `a.localeCompare(b) < 0` under ICU's root collation, exact for ASCII.
    static func localeLess(_ lhs: String, _ rhs: String) -> Bool {
        let l = Array(lhs.unicodeScalars)
        let r = Array(rhs.unicodeScalars)
        // Primary level: compare ignoring case.
        for (a, b) in zip(l, r) where primaryWeight(a) != primaryWeight(b) {
            return primaryWeight(a) < primaryWeight(b)
        }
        if l.count != r.count { return l.count < r.count }
        // Tertiary level: lowercase sorts before uppercase.
        for (a, b) in zip(l, r) where a != b {
            let aUpper = a.properties.isUppercase
            let bUpper = b.properties.isUppercase
            if aUpper != bUpper { return !aUpper }
            return a.value < b.value
        }
        return false
    }

    private static func primaryWeight(_ scalar: Unicode.Scalar) -> UInt32 {
        let value = scalar.value
        switch value {
        case 0x30...0x39: return 0x1000 + value  // digits after punctuation
        case 0x41...0x5A: return 0x2000 + value + 0x20  // letters, case-folded
        case 0x61...0x7A: return 0x2000 + value
        case 0x20..<0x7F: return 0x100 + punctuationRank[Int(value)]  // punctuation and symbols first, in ICU's order
        case 0..<0x80: return value  // control characters before everything else
        default: return 0x3000 + value
        }
    }

    /// ICU's root collation orders ASCII punctuation and symbols neither by code point nor by kind (measured with
    /// Node's `localeCompare`): `_` before `-` before `.`, and `$` last, for example.
    private static let punctuationRank: [UInt32] = {
        var rank = [UInt32](repeating: 0, count: 0x80)
        for (index, byte) in " _-,;:!?.'\"()[]{}@*/\\&#%`^+<=>|~$".utf8.enumerated() { rank[Int(byte)] = UInt32(index) }
        return rank
    }()
}
