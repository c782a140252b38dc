//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import Synchronization

/// Turns typed payloads into the raw JSON a wire format carries, and back.
///
/// `Codable` types go through Courier's own Foundation-free coders, ``CourierJSONEncoder`` and
/// ``CourierJSONDecoder``, which implement the default strategies of Foundation's `JSONEncoder`/`JSONDecoder` (with
/// `/` left unescaped, as NestJS writes it) several times faster. ``JSONValue`` uses Courier's parser and writer, and
/// a `ByteBuffer` passes through untouched. Errors are ``CourierError``s with ``CourierError/Code/encodingFailed`` or
/// ``CourierError/Code/decodingFailed``.
///
/// ## Foundation fallback
///
/// Whatever the fast coders cannot do exactly as Foundation does, Foundation does, for the whole payload:
///
/// - they throw ``CourierJSONCodingError/unsupported(_:)`` for `Data`, `URL` and `Decimal` (which Foundation writes
///   as base64, a string and a plain number rather than through their own conformances), and for encoder use a
///   single forward pass cannot reproduce (a key given twice, writing to a container after a later one);
/// - the fast decoder is strict about JSON syntax, while Foundation accepts a few deviations (a trailing comma in an
///   array, a byte order mark, UTF-16 input, bad escapes or numbers in members it does not decode); so a document
///   the fast decoder rejects as malformed goes to Foundation too, and is reported with the fast decoder's more
///   precise error only if Foundation rejects it as malformed as well.
///
/// Payloads therefore encode and decode as they did with Foundation alone, except that object members come out in
/// declaration order rather than in an unspecified one, and that ``JSONValue``s nested in `Codable` values are
/// written and parsed by Courier's own writer and parser, as top-level ones always were.
public struct PayloadCoder: Sendable {
    /// A coder with the default JSON settings.
    public init() {}

    /// Encodes a value as JSON.
    public func encode<Value: Encodable>(_ value: Value) throws -> ByteBuffer {
        // Metatype comparisons, not `as?` casts: a dynamic cast per call cost more than encoding a small value.
        if Value.self == JSONValue.self, let json = value as? JSONValue {
            var bytes: [UInt8] = []
            JSONWriter.append(json, to: &bytes)
            // One allocation of the right size (writing into an empty buffer grows it first).
            return ByteBuffer(bytes: bytes)
        }
        if Value.self == ByteBuffer.self, let raw = value as? ByteBuffer { return raw }
        do {
            do {
                return try CourierJSONEncoder().encodeToBuffer(value)
            } catch is CourierJSONCodingError {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.withoutEscapingSlashes]
                return ByteBuffer(bytes: try encoder.encode(value))
            }
        } catch {
            throw CourierError(.encodingFailed, "could not encode \(Value.self): \(error)", underlying: error)
        }
    }

    /// Decodes a value from raw JSON; `nil` (a reply with no value) decodes as JSON `null`.
    public func decode<Value: Decodable>(_ type: Value.Type, from buffer: ByteBuffer?) throws -> Value {
        let buffer = buffer ?? ByteBuffer(staticString: "null")
        if Value.self == JSONValue.self {
            do {
                let value = try buffer.withUnsafeReadableBytes { try JSONValue(parsing: $0) }
                return value as! Value
            } catch {
                throw CourierError(.decodingFailed, "payload is not valid JSON: \(error)", underlying: error)
            }
        }
        if Value.self == ByteBuffer.self { return buffer as! Value }
        do {
            do {
                return try CourierJSONDecoder().decode(Value.self, from: buffer)
            } catch is CourierJSONCodingError {
                return try JSONDecoder().decode(Value.self, from: Data(buffer.readableBytesView))
            } catch let strict as DecodingError where Self.isMalformedJSON(strict) {
                do {
                    return try JSONDecoder().decode(Value.self, from: Data(buffer.readableBytesView))
                } catch let lenient as DecodingError where Self.isMalformedJSON(lenient) {
                    throw strict
                }
            }
        } catch {
            throw CourierError(
                .decodingFailed,
                "could not decode \(Value.self) from \(Self.preview(buffer)): \(Self.describe(error))",
                underlying: error
            )
        }
    }

    /// Whether a decoding error says the document is not JSON at all, rather than not the expected type: the fast
    /// decoder attaches the parser's ``JSONError``; Foundation says so in its description, at the top level.
    private static func isMalformedJSON(_ error: DecodingError) -> Bool {
        guard case .dataCorrupted(let context) = error, context.codingPath.isEmpty else { return false }
        return context.underlyingError is JSONError || context.debugDescription == "The given data was not valid JSON."
    }

    /// The start of a payload, for error messages.
    static func preview(_ buffer: ByteBuffer) -> String {
        let limit = 120
        let text = String(decoding: buffer.readableBytesView.prefix(limit), as: UTF8.self)
        return buffer.readableBytes > limit ? "\(text)…" : text
    }

    private static func describe(_ error: any Error) -> String {
        guard let decoding = error as? DecodingError else { return "\(error)" }
        switch decoding {
        case .typeMismatch(let type, let context):
            return "expected \(type) at \(path(context.codingPath)): \(context.debugDescription)"
        case .valueNotFound(let type, let context):
            return "missing \(type) at \(path(context.codingPath))"
        case .keyNotFound(let key, let context):
            return "missing key '\(key.stringValue)' at \(path(context.codingPath))"
        case .dataCorrupted(let context):
            return "\(context.debugDescription) at \(path(context.codingPath))"
        @unknown default:
            return "\(error)"
        }
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "top level" : keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
    }
}

/// Generates correlation ids: lowercase text in the shape of a version 4 UUID, as NestJS's are.
///
/// The first 8 bytes are random, drawn once per process; the last 8 are a counter. Ids are therefore unique within a
/// process and, with 62 random bits per process, across the processes that share a reply channel; making one costs
/// no system call (drawing two random numbers per id cost two `getrandom` calls, a tenth of a small RPC's time).
public enum CorrelationID {
    private static let prefix: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next()
    }()
    private static let counter = Atomic<UInt64>(0)

    /// A new id.
    public static func make() -> String {
        let sequence = counter.add(1, ordering: .relaxed).newValue
        var bytes = (prefix.bigEndian, sequence.bigEndian)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = (raw[6] & 0x0F) | 0x40
            raw[8] = (raw[8] & 0x3F) | 0x80
            let digits = ("0123456789abcdef" as StaticString).utf8Start
            return String(unsafeUninitializedCapacity: 36) { out in
                var position = 0
                for index in 0..<16 {
                    if index == 4 || index == 6 || index == 8 || index == 10 {
                        out[position] = UInt8(ascii: "-")
                        position += 1
                    }
                    out[position] = digits[Int(raw[index] >> 4)]
                    out[position + 1] = digits[Int(raw[index] & 0x0F)]
                    position += 2
                }
                return position
            }
        }
    }
}
