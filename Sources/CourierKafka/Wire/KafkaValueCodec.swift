//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// NestJS's Kafka record-value rules, between Courier's raw JSON payloads and record value bytes.
///
/// NestJS does not put JSON on Kafka: it writes objects and arrays as JSON, strings as their raw text **without
/// quotes**, numbers and booleans as their text, and `null` as a null record value. Reading, it JSON-parses only
/// text starting with `{` or `[` and delivers everything else as a string.
///
/// Courier writes exactly as NestJS does, and reads a little more cleverly so that Courier-to-Courier calls keep
/// their types: text that is a complete JSON scalar (`5`, `true`, `null`, `"quoted"`) is kept as that JSON value,
/// and any other text becomes a JSON string. The price is an ambiguity that cannot be avoided without changing the
/// bytes NestJS expects:
/// - a string payload whose text is itself JSON changes type: the string `"5"` is sent as `5` and arrives as the
///   number `5`; `"true"` arrives as `true`, `"null"` as `null`, `"[1]"` as an array, and `"\"x\""` (a string
///   holding quotes) as the string `x`;
/// - the other way round, a NestJS peer sending the number `5` delivers the string `"5"` to its own handlers but
///   the number `5` to Courier's.
///
/// Handlers that take `String` payloads should not rely on their content never looking like JSON; wrapping the
/// value in an object avoids the question altogether.
public enum KafkaValueCodec {
    /// Encodes a payload's raw JSON as a record value, the way NestJS's serializer does.
    ///
    /// | payload JSON | record value |
    /// |---|---|
    /// | object or array | the JSON text as is |
    /// | string | its unescaped text, without quotes |
    /// | number, `true`, `false` | the literal text |
    /// | `null` or no bytes | `nil` (a null record value) |
    ///
    /// - Parameter payload: The raw JSON text of the payload (its readable bytes).
    /// - Returns: The record value, or `nil` for a null record value.
    /// - Throws: ``CourierError`` with code ``CourierError/Code/encodingFailed`` when the payload is not exactly one
    ///   JSON value.
    public static func encode(_ payload: ByteBuffer) throws -> [UInt8]? {
        try payload.withUnsafeReadableBytes { bytes in try encode(bytes) }
    }

    /// Encodes a payload's raw JSON bytes as a record value; the same rules as the `ByteBuffer` overload.
    public static func encode(_ payload: [UInt8]) throws -> [UInt8]? {
        try payload.withUnsafeBytes { bytes in try encode(bytes) }
    }

    private static func encode(_ bytes: UnsafeRawBufferPointer) throws -> [UInt8]? {
        // An empty payload means "no data", which NestJSEnvelope also sends as null.
        guard bytes.contains(where: { !isWhitespace($0) }) else { return nil }
        do {
            let (range, kind) = try JSONScanner.scanValue(in: bytes, from: 0)
            if let extra = bytes[range.upperBound...].firstIndex(where: { !isWhitespace($0) }) {
                throw JSONError(message: "unexpected data after the value at offset \(extra)", offset: extra)
            }
            switch kind {
            case .null:
                return nil
            case .string:
                return Array(try JSONScanner.decodeString(in: bytes, range: range).utf8)
            case .bool, .number, .array, .object:
                // Already validated by the scan; numbers keep their literal spelling (`1e3` stays `1e3`).
                return Array(UnsafeRawBufferPointer(rebasing: bytes[range]))
            }
        } catch {
            throw CourierError(.encodingFailed, "a Kafka payload must be one JSON value: \(error)", underlying: error)
        }
    }

    /// Decodes a record value into raw JSON for a handler or a caller.
    ///
    /// | record value | payload JSON |
    /// |---|---|
    /// | `nil` | `null` |
    /// | bytes starting with `0x00` (schema-registry magic byte, other binary) | a JSON string of the bytes as UTF-8 |
    /// | text starting with `{` or `[` that parses | that JSON (surrounding whitespace removed) |
    /// | text starting with `{` or `[` that does not parse | a JSON string of the text |
    /// | text that is exactly one JSON number, `true`, `false`, `null` or quoted string literal | that JSON as is |
    /// | any other text (NestJS's raw strings, such as `hello`) | a JSON string of the text (`"hello"`) |
    ///
    /// Text is UTF-8; invalid sequences become U+FFFD, as Node's `Buffer.toString()` does. That makes binary
    /// values **lossy**: NestJS hands them to its handlers as raw bytes, Courier as a string from which the bytes
    /// cannot always be recovered (a `0x00` survives as `\u0000`, an invalid sequence does not). See the type's
    /// documentation for the `"5"` ambiguity.
    public static func decode(_ value: [UInt8]?) -> ByteBuffer {
        guard let value else { return ByteBuffer(staticString: "null") }
        return value.withUnsafeBytes { bytes in
            if let json = jsonRange(bytes) {
                return ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: bytes[json]))
            }
            var literal: [UInt8] = []
            literal.reserveCapacity(bytes.count + 2)
            JSONWriter.appendString(String(decoding: bytes, as: UTF8.self), to: &literal)
            return ByteBuffer(bytes: literal)
        }
    }

    /// Where the value's bytes can be delivered as JSON unchanged, or `nil` when they must become a JSON string.
    private static func jsonRange(_ bytes: UnsafeRawBufferPointer) -> Range<Int>? {
        // Binary (NestJS keeps 0x00-prefixed values as raw bytes) and empty values are never JSON.
        guard let first = bytes.first, first != 0 else { return nil }
        guard let (range, kind) = try? JSONScanner.scanValue(in: bytes, from: 0) else { return nil }
        let trailingIsWhitespace = bytes[range.upperBound...].allSatisfy(isWhitespace)
        switch kind {
        case .object, .array:
            // NestJS's `JSON.parse` allows trailing whitespace; the leading byte is `{` or `[` by construction
            // (whitespace first would be a NestJS string, and the scanner would have skipped it).
            guard range.lowerBound == 0, trailingIsWhitespace else { return nil }
            return range
        case .null, .bool, .number, .string:
            // Scalars must be the whole text: ` 5` or `5 ` is a NestJS string whose spaces matter.
            guard range == 0..<bytes.count else { return nil }
            return range
        }
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09
    }
}
