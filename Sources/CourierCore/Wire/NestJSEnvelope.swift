//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The NestJS JSON envelopes shared by the TCP and Redis transports.
///
/// - request: `{"pattern":…,"data":…,"id":"…"}` (plus `metadata` when there are headers or a timeout)
/// - event: `{"pattern":…,"data":…}`
/// - reply: `{"response":…,"err":…,"isDisposed":true,"id":"…"}` with absent keys left out
/// - unknown pattern: `{"id":"…","status":"error","err":"There is no matching message handler …"}`
///
/// Courier adds two keys that NestJS peers ignore: the caller's timeout travels as the metadata entry
/// `courier-timeout-ms`, and a handler's deadline extension is a reply `{"courier-extend-ms":N,"id":"…"}`, sent
/// only to callers that announced a timeout (so NestJS callers never see one).
public enum NestJSEnvelope {
    /// The metadata key carrying the caller's timeout in milliseconds.
    public static let timeoutMetadataKey = "courier-timeout-ms"
    /// The reply key carrying a deadline extension in milliseconds.
    public static let extendKey = "courier-extend-ms"

    // MARK: Encoding

    /// Bytes enough for ``encode(_:into:)-(WireRequest,_)`` to write `request` without growing the buffer, when no
    /// string in it needs escaping (the common case). Growing it would allocate and copy the whole envelope again.
    package static func capacity(for request: WireRequest) -> Int {
        // The keys, quotes, braces and commas, `null` for an empty payload, and up to 20 digits of the timeout.
        var bytes = 96 + request.pattern.utf8.count + request.payload.readableBytes
        bytes += request.correlationID?.utf8.count ?? 0
        for (key, value) in request.headers { bytes += key.utf8.count + value.utf8.count + 6 }
        return bytes
    }

    /// Bytes enough for ``encode(_:into:)-(WireReply,_)`` to write a reply with a value or an end of stream (or an
    /// extension) without growing the buffer, when its id needs no escaping.
    package static func capacity(for reply: WireReply) -> Int {
        // The keys, quotes, braces and commas, `null` for an empty value, and up to 20 digits of an extension.
        84 + reply.correlationID.utf8.count + (reply.response?.readableBytes ?? 0)
    }

    /// Appends the JSON text of a request or event.
    public static func encode(_ request: WireRequest, into buffer: inout ByteBuffer) {
        if encodePlain(request, into: &buffer) { return }
        buffer.writeStaticString("{\"pattern\":")
        writeJSONString(request.pattern, into: &buffer)
        buffer.writeStaticString(",\"data\":")
        var payload = request.payload
        if payload.readableBytes == 0 {
            buffer.writeStaticString("null")
        } else {
            buffer.writeBuffer(&payload)
        }
        if !request.headers.isEmpty || (request.timeout != nil && request.correlationID != nil) {
            buffer.writeStaticString(",\"metadata\":{")
            var first = true
            for (key, value) in request.headers.sorted(by: { $0.key < $1.key }) {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                first = false
                writeJSONString(key, into: &buffer)
                buffer.writeInteger(UInt8(ascii: ":"))
                writeJSONString(value, into: &buffer)
            }
            if let timeout = request.timeout, request.correlationID != nil {
                if !first { buffer.writeInteger(UInt8(ascii: ",")) }
                buffer.writeStaticString("\"courier-timeout-ms\":\"")
                buffer.writeString(String(timeout.milliseconds))
                buffer.writeInteger(UInt8(ascii: "\""))
            }
            buffer.writeInteger(UInt8(ascii: "}"))
        }
        if let id = request.correlationID {
            buffer.writeStaticString(",\"id\":")
            writeJSONString(id, into: &buffer)
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// Appends the JSON text of a reply, with NestJS's key order.
    public static func encode(_ reply: WireReply, into buffer: inout ByteBuffer) {
        if encodePlain(reply, into: &buffer) { return }
        if let status = reply.status {
            // NestJS's unknown-pattern reply puts the id first.
            buffer.writeStaticString("{\"id\":")
            writeJSONString(reply.correlationID, into: &buffer)
            buffer.writeStaticString(",\"status\":")
            writeJSONString(status, into: &buffer)
            if let error = reply.error {
                buffer.writeStaticString(",\"err\":")
                writeError(error, into: &buffer)
            }
            if reply.isDisposed { buffer.writeStaticString(",\"isDisposed\":true") }
            buffer.writeInteger(UInt8(ascii: "}"))
            return
        }
        buffer.writeInteger(UInt8(ascii: "{"))
        if var response = reply.response {
            buffer.writeStaticString("\"response\":")
            if response.readableBytes == 0 {
                buffer.writeStaticString("null")
            } else {
                buffer.writeBuffer(&response)
            }
            buffer.writeInteger(UInt8(ascii: ","))
        }
        if let error = reply.error {
            buffer.writeStaticString("\"err\":")
            writeError(error, into: &buffer)
            buffer.writeInteger(UInt8(ascii: ","))
        }
        if reply.isDisposed { buffer.writeStaticString("\"isDisposed\":true,") }
        if let extend = reply.extendDeadline {
            buffer.writeStaticString("\"courier-extend-ms\":")
            buffer.writeString(String(extend.milliseconds))
            buffer.writeInteger(UInt8(ascii: ","))
        }
        buffer.writeStaticString("\"id\":")
        writeJSONString(reply.correlationID, into: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// The common case of ``encode(_:into:)-(WireRequest,_)``, with one reservation: strings that need no escaping.
    /// Returns false, having written nothing, for anything else.
    private static func encodePlain(_ request: WireRequest, into buffer: inout ByteBuffer) -> Bool {
        guard PieceWriter.isPlain(request.pattern) else { return false }
        if let id = request.correlationID, !PieceWriter.isPlain(id) { return false }
        let headers = request.headers.isEmpty ? [] : request.headers.sorted { $0.key < $1.key }
        for (key, value) in headers where !PieceWriter.isPlain(key) || !PieceWriter.isPlain(value) { return false }
        let timeout = request.correlationID != nil ? request.timeout?.milliseconds : nil
        let hasMetadata = !headers.isEmpty || timeout != nil

        let open: StaticString = "{\"pattern\":"
        let data: StaticString = ",\"data\":"
        let metadata: StaticString = ",\"metadata\":{"
        let timeoutKey: StaticString = "\"courier-timeout-ms\":\""
        let idKey: StaticString = ",\"id\":"
        var length = open.utf8CodeUnitCount + request.pattern.utf8.count + 2 + data.utf8CodeUnitCount
        length += request.payload.readableBytes == 0 ? 4 : request.payload.readableBytes
        if hasMetadata {
            length += metadata.utf8CodeUnitCount + 1  // the closing brace
            for (key, value) in headers { length += key.utf8.count + value.utf8.count + 5 }  // "k":"v"
            if let timeout { length += timeoutKey.utf8CodeUnitCount + PieceWriter.decimalLength(timeout) + 1 }
            length += max(0, headers.count + (timeout == nil ? 0 : 1) - 1)  // commas between entries
        }
        if let id = request.correlationID { length += idKey.utf8CodeUnitCount + id.utf8.count + 2 }
        length += 1

        buffer.writePieces(length: length) { out in
            out.put(open)
            out.putQuoted(request.pattern)
            out.put(data)
            if request.payload.readableBytes == 0 { out.put("null" as StaticString) } else { out.put(request.payload) }
            if hasMetadata {
                out.put(metadata)
                var first = true
                for (key, value) in headers {
                    if !first { out.put(UInt8(ascii: ",")) }
                    first = false
                    out.putQuoted(key)
                    out.put(UInt8(ascii: ":"))
                    out.putQuoted(value)
                }
                if let timeout {
                    if !first { out.put(UInt8(ascii: ",")) }
                    out.put(timeoutKey)
                    out.put(decimal: timeout)
                    out.put(UInt8(ascii: "\""))
                }
                out.put(UInt8(ascii: "}"))
            }
            if let id = request.correlationID {
                out.put(idKey)
                out.putQuoted(id)
            }
            out.put(UInt8(ascii: "}"))
        }
        return true
    }

    /// The common case of ``encode(_:into:)-(WireReply,_)``, with one reservation: a value or end of stream, no
    /// error, an id that needs no escaping. Returns false, having written nothing, for anything else.
    private static func encodePlain(_ reply: WireReply, into buffer: inout ByteBuffer) -> Bool {
        guard reply.status == nil, reply.error == nil, PieceWriter.isPlain(reply.correlationID) else { return false }
        let response: StaticString = "\"response\":"
        let disposed: StaticString = "\"isDisposed\":true,"
        let extendKey: StaticString = "\"courier-extend-ms\":"
        let idKey: StaticString = "\"id\":"
        let extend = reply.extendDeadline?.milliseconds
        var length = 1 + idKey.utf8CodeUnitCount + reply.correlationID.utf8.count + 2 + 1
        if let value = reply.response {
            length += response.utf8CodeUnitCount + (value.readableBytes == 0 ? 4 : value.readableBytes) + 1
        }
        if reply.isDisposed { length += disposed.utf8CodeUnitCount }
        if let extend { length += extendKey.utf8CodeUnitCount + PieceWriter.decimalLength(extend) + 1 }

        buffer.writePieces(length: length) { out in
            out.put(UInt8(ascii: "{"))
            if let value = reply.response {
                out.put(response)
                if value.readableBytes == 0 { out.put("null" as StaticString) } else { out.put(value) }
                out.put(UInt8(ascii: ","))
            }
            if reply.isDisposed { out.put(disposed) }
            if let extend {
                out.put(extendKey)
                out.put(decimal: extend)
                out.put(UInt8(ascii: ","))
            }
            out.put(idKey)
            out.putQuoted(reply.correlationID)
            out.put(UInt8(ascii: "}"))
        }
        return true
    }

    // MARK: Decoding

    /// Decodes one envelope from the readable bytes of `buffer`.
    ///
    /// - Throws: ``WireFormatError`` when the bytes are not JSON, not an object, or not a NestJS packet.
    public static func decode(_ buffer: ByteBuffer) throws(WireFormatError) -> WirePacket {
        do {
            return try buffer.withUnsafeReadableBytes { bytes in try decode(bytes, buffer: buffer) }
        } catch let error as WireFormatError {
            throw error
        } catch {
            throw WireFormatError(reason: "invalid JSON: \(error)")
        }
    }

    private static func decode(_ bytes: UnsafeRawBufferPointer, buffer: ByteBuffer) throws -> WirePacket {
        if let packet = CompactEnvelope.decode(bytes, buffer: buffer) { return packet }
        return try decodeGenerally(bytes, buffer: buffer)
    }

    /// ``decode(_:)`` without the compact path, which must give the same packet for every input it accepts (the
    /// tests compare them).
    static func decodeGenerally(_ buffer: ByteBuffer) throws -> WirePacket {
        try buffer.withUnsafeReadableBytes { bytes in try decodeGenerally(bytes, buffer: buffer) }
    }

    private static func decodeGenerally(_ bytes: UnsafeRawBufferPointer, buffer: ByteBuffer) throws -> WirePacket {
        var pattern: String?
        var data: Range<Int>?
        var id: String?
        var response: Range<Int>?
        var err: JSONValue?
        var isDisposed = false
        var status: String?
        var headers: [String: String] = [:]
        var timeout: Duration?
        var extend: Duration?

        try JSONScanner.scanObject(bytes) { key, keyHasEscapes, value, kind in
            // Keys are matched on their bytes: building a String per key cost more than the rest of the decode.
            let name = keyHasEscapes
                ? EnvelopeKey(try JSONScanner.decodeString(in: bytes, range: (key.lowerBound - 1)..<(key.upperBound + 1)))
                : EnvelopeKey(UnsafeRawBufferPointer(rebasing: bytes[key]))
            switch name {
            case .pattern:
                pattern = try routeString(bytes, value, kind)
            case .data:
                data = value
            case .id:
                switch kind {
                case .string: id = try JSONScanner.decodeString(in: bytes, range: value)
                case .number: id = text(bytes, value)
                default: id = nil
                }
            case .response:
                response = value
            case .err:
                let parsed = try JSONScanner.parseValue(in: bytes, range: value)
                // `nil` alone would become JSON `null` here (JSONValue is ExpressibleByNilLiteral), not "no error".
                err = parsed.isJavaScriptTruthy ? parsed : Optional<JSONValue>.none
            case .isDisposed:
                isDisposed = kind == .bool
                    ? bytes[value.lowerBound] == UInt8(ascii: "t")
                    : try JSONScanner.parseValue(in: bytes, range: value).isJavaScriptTruthy
            case .status:
                if kind == .string { status = try JSONScanner.decodeString(in: bytes, range: value) }
            case .metadata:
                guard kind == .object else { break }
                let metadata = UnsafeRawBufferPointer(rebasing: bytes[value])
                try JSONScanner.scanObject(metadata) { key, keyHasEscapes, entry, entryKind in
                    if !keyHasEscapes, entryKind == .string, Self.isTimeoutKey(UnsafeRawBufferPointer(rebasing: metadata[key])) {
                        // Courier's own entry, read without building strings: it is on every call.
                        timeout = Self.milliseconds(UnsafeRawBufferPointer(rebasing: metadata[(entry.lowerBound + 1)..<(entry.upperBound - 1)]))
                        return
                    }
                    let name = try JSONScanner.decodeString(in: metadata, range: (key.lowerBound - 1)..<(key.upperBound + 1))
                    headers[name] = entryKind == .string
                        ? try JSONScanner.decodeString(in: metadata, range: entry)
                        : try JSONScanner.parseValue(in: metadata, range: entry).description
                }
            case .extend:
                if kind == .number, let ms = try JSONScanner.parseValue(in: bytes, range: value).doubleValue {
                    extend = .wireMilliseconds(ms)
                }
            case .other:
                break
            }
        }
        if timeout == nil, let raw = headers.removeValue(forKey: timeoutMetadataKey), let ms = Int64(raw), ms >= 0 {
            // An escaped spelling of the key.
            timeout = .milliseconds(ms)
        }
        if pattern != nil || data != nil {
            let payload = data.map { buffer.getSlice(at: buffer.readerIndex + $0.lowerBound, length: $0.count)! }
            return .request(
                WireRequest(
                    pattern: pattern ?? "",
                    payload: payload ?? ByteBuffer(staticString: "null"),
                    correlationID: id,
                    headers: headers,
                    timeout: timeout
                )
            )
        }
        guard let id else {
            throw WireFormatError(reason: "a packet needs 'pattern' and 'data' (request or event) or 'id' (reply)")
        }
        return .reply(
            WireReply(
                correlationID: id,
                response: response.map { buffer.getSlice(at: buffer.readerIndex + $0.lowerBound, length: $0.count)! },
                error: err,
                isDisposed: isDisposed,
                status: status,
                extendDeadline: extend
            )
        )
    }

    private static func isTimeoutKey(_ key: UnsafeRawBufferPointer) -> Bool {
        let name: StaticString = "courier-timeout-ms"
        return key.count == name.utf8CodeUnitCount && memcmp(name.utf8Start, key.baseAddress!, key.count) == 0
    }

    /// Whole milliseconds from decimal digits, or nil (as `Int64(text)` would give) for anything else.
    fileprivate static func milliseconds(_ digits: UnsafeRawBufferPointer) -> Duration? {
        guard !digits.isEmpty, digits.count <= 18 else { return nil }
        var value: Int64 = 0
        for byte in digits {
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        return .milliseconds(value)
    }

    /// The route string of a `pattern` value, normalised as NestJS does (§1.2 of the wire notes).
    private static func routeString(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, _ kind: JSONKind) throws
        -> String
    {
        switch kind {
        case .string:
            let text = try JSONScanner.decodeString(in: bytes, range: range)
            // NestJS re-parses string patterns that hold JSON objects, so `{"b":1,"a":2}` routes as `{"a":2,"b":1}`.
            if text.utf8.first == UInt8(ascii: "{"), let object = try? JSONValue(parsing: text) {
                return NestPatternNormalizer.routeString(for: object)
            }
            return text
        case .number:
            return text(bytes, range)
        default:
            return NestPatternNormalizer.routeString(for: try JSONScanner.parseValue(in: bytes, range: range))
        }
    }

    fileprivate static func text(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    // MARK: JSON writing into ByteBuffer

    /// Writes `string` as a JSON string literal, escaping only what RFC 8259 requires.
    public static func writeJSONString(_ string: String, into buffer: inout ByteBuffer) {
        var needsEscaping = false
        for byte in string.utf8 where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
            needsEscaping = true
            break
        }
        if !needsEscaping {
            buffer.writeInteger(UInt8(ascii: "\""))
            buffer.writeString(string)
            buffer.writeInteger(UInt8(ascii: "\""))
            return
        }
        var bytes: [UInt8] = []
        JSONWriter.appendString(string, to: &bytes)
        buffer.writeBytes(bytes)
    }

    /// Writes an `err` value. Objects put `status` and `message` first, in that order, as NestJS's exception filter
    /// does (`{"status":"error","message":"Internal server error"}`, §1.4 of the wire notes); other keys follow in
    /// the writer's sorted order.
    static func writeError(_ error: JSONValue, into buffer: inout ByteBuffer) {
        guard case .object(var members) = error else { return writeJSON(error, into: &buffer) }
        buffer.writeInteger(UInt8(ascii: "{"))
        var first = true
        for key in ["status", "message"] {
            guard let value = members.removeValue(forKey: key) else { continue }
            if !first { buffer.writeInteger(UInt8(ascii: ",")) }
            first = false
            writeJSONString(key, into: &buffer)
            buffer.writeInteger(UInt8(ascii: ":"))
            writeJSON(value, into: &buffer)
        }
        if !members.isEmpty {
            // The rest, sorted, without the outer braces.
            var rest: [UInt8] = []
            JSONWriter.append(.object(members), to: &rest)
            if !first { buffer.writeInteger(UInt8(ascii: ",")) }
            buffer.writeBytes(rest.dropFirst().dropLast())
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// Writes the compact JSON text of `value`.
    public static func writeJSON(_ value: JSONValue, into buffer: inout ByteBuffer) {
        var bytes: [UInt8] = []
        JSONWriter.append(value, to: &bytes)
        buffer.writeBytes(bytes)
    }
}

/// The envelope keys the decoder knows, matched on their UTF-8 bytes.
private enum EnvelopeKey {
    case pattern, data, id, response, err, isDisposed, status, metadata, extend, other

    init(_ bytes: UnsafeRawBufferPointer) {
        func equals(_ name: StaticString) -> Bool {
            name.utf8CodeUnitCount == bytes.count
                && memcmp(name.utf8Start, bytes.baseAddress!, bytes.count) == 0
        }
        switch bytes.count {
        case 2: self = equals("id") ? .id : .other
        case 3: self = equals("err") ? .err : .other
        case 4: self = equals("data") ? .data : .other
        case 6: self = equals("status") ? .status : .other
        case 7: self = equals("pattern") ? .pattern : .other
        case 8: self = equals("response") ? .response : equals("metadata") ? .metadata : .other
        case 10: self = equals("isDisposed") ? .isDisposed : .other
        case 17: self = equals("courier-extend-ms") ? .extend : .other
        default: self = .other
        }
    }

    init(_ name: String) {
        var name = name
        self = name.withUTF8 { EnvelopeKey(UnsafeRawBufferPointer($0)) }
    }
}

/// A frame or packet that does not follow the wire format.
public struct WireFormatError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What is wrong, for logs.
    public var reason: String

    /// An error with a reason for logs.
    public init(reason: String) { self.reason = reason }

    public var description: String { reason }
}

extension Duration {
    /// Whole milliseconds, rounded down, never negative, and `Int64.max` for a longer duration than that holds.
    public var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        guard seconds >= 0 else { return 0 }
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1000)
        if overflow { return .max }
        let (total, sumOverflow) = scaled.addingReportingOverflow(attoseconds / 1_000_000_000_000_000)
        return sumOverflow ? .max : total
    }

    /// The longest duration read from a number on the wire: about 31,700 years, far past any deadline, and far
    /// below what `Duration` and the deadline arithmetic can hold.
    static let longestWireMilliseconds: Double = 1e15

    /// A duration from a number of milliseconds received from a peer: negative and NaN become zero and anything
    /// longer than ``longestWireMilliseconds`` is capped to it (`Duration.milliseconds(_:)` traps on huge values,
    /// and the number comes from the network).
    package static func wireMilliseconds(_ milliseconds: Double) -> Duration {
        guard milliseconds > 0 else { return .zero }  // also NaN
        return .milliseconds(min(milliseconds, longestWireMilliseconds))
    }
}

extension JSONValue {
    /// JavaScript truthiness, which NestJS applies to `err` and `isDisposed`.
    var isJavaScriptTruthy: Bool {
        switch self {
        case .null: false
        case .bool(let value): value
        case .integer(let value): value != 0
        case .double(let value): value != 0 && !value.isNaN
        case .string(let value): !value.isEmpty
        case .array, .object: true
        }
    }
}

/// The envelopes Courier and NestJS write, read without the general object scan: members in the order they write
/// them, no whitespace between them, ASCII strings without escapes. Anything else (and anything invalid) returns `nil` for the
/// general decoder, which gives the same packet for every input this accepts.
///
/// - Requests and events: `{"pattern":"p","data":V}`, then `,"metadata":{"courier-timeout-ms":"N"}` and
///   `,"id":"i"` when present.
/// - Replies: `{"response":V,"id":"i"}` and `{"response":V,"isDisposed":true,"id":"i"}`.
///
/// The general decoder's object scan, key matching and string decoding were most of an envelope's cost, on both
/// sides of every call.
private struct CompactEnvelope {
    let bytes: UnsafeRawBufferPointer
    var offset = 0

    static func decode(_ bytes: UnsafeRawBufferPointer, buffer: ByteBuffer) -> WirePacket? {
        var reader = CompactEnvelope(bytes: bytes)
        if reader.take("{\"pattern\":") {
            return reader.request(buffer)
        }
        if reader.take("{\"response\":") {
            return reader.reply(buffer)
        }
        return nil
    }

    private mutating func request(_ buffer: ByteBuffer) -> WirePacket? {
        // A pattern that holds a JSON object is normalised by the general decoder.
        guard let pattern = plainString(), bytes[pattern.lowerBound] != UInt8(ascii: "{"),
            take(",\"data\":"), let data = value()
        else { return nil }
        var timeout: Duration?
        if take(",\"metadata\":{\"courier-timeout-ms\":") {
            guard let digits = plainString(),
                let milliseconds = NestJSEnvelope.milliseconds(UnsafeRawBufferPointer(rebasing: bytes[digits])),
                take("}")
            else { return nil }
            timeout = milliseconds
        }
        var id: Range<Int>?
        if take(",\"id\":") {
            guard let text = plainString() else { return nil }
            id = text
        }
        guard take("}"), offset == bytes.count else { return nil }
        return .request(
            WireRequest(
                pattern: text(pattern),
                payload: buffer.getSlice(at: buffer.readerIndex + data.lowerBound, length: data.count)!,
                correlationID: id.map(text),
                timeout: timeout
            )
        )
    }

    private mutating func reply(_ buffer: ByteBuffer) -> WirePacket? {
        guard let response = value() else { return nil }
        let isDisposed = take(",\"isDisposed\":true")
        guard take(",\"id\":"), let id = plainString(), take("}"), offset == bytes.count else { return nil }
        return .reply(
            WireReply(
                correlationID: text(id),
                response: buffer.getSlice(at: buffer.readerIndex + response.lowerBound, length: response.count)!,
                isDisposed: isDisposed
            )
        )
    }

    /// Consumes `literal` if the bytes at the offset are exactly it.
    private mutating func take(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - offset >= count, memcmp(bytes.baseAddress! + offset, literal.utf8Start, count) == 0
        else { return false }
        offset += count
        return true
    }

    /// A quoted string of printable ASCII without escapes; the range of its content.
    private mutating func plainString() -> Range<Int>? {
        guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { return nil }
        let start = offset + 1
        var index = start
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                offset = index + 1
                return start..<index
            }
            guard byte >= 0x20, byte < 0x80, byte != UInt8(ascii: "\\") else { return nil }
            index += 1
        }
        return nil
    }

    /// A member's value, validated as the general decoder's object scan does (one level of nesting less).
    private mutating func value() -> Range<Int>? {
        guard let (range, _) = try? JSONScanner.scanValue(in: bytes, from: offset,
                                                          maximumDepth: JSONScanner.maximumDepth - 1)
        else { return nil }
        offset = range.upperBound
        return range
    }

    private func text(_ range: Range<Int>) -> String {
        NestJSEnvelope.text(bytes, range)
    }
}
