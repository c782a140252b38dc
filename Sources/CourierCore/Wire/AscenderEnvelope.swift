//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The envelopes of Ascender Framework 2.1.0 (Python) on TCP and Redis, for talking to Ascender services.
///
/// - request: `{"pattern":"sum","correlationId":"<id>","payload":"[1, 2, 3]"}`. The payload is JSON **text inside
///   a JSON string**, as Ascender double-encodes it. On Redis the channel is the pattern, and `pattern` is left out.
/// - event: the same without `correlationId`.
/// - reply: `{"correlationId":"response-<id>","pattern":"_rpc:response","payload":"6"}`.
/// - error: `{"correlationId":"response-<id>","pattern":"_rpc:error","payload":{"error":"…","code":500,"details":null,"metadata":{}}}`
///
/// Where Ascender itself is broken, Courier does the following (see `docs/redis.md`):
/// - Ascender publishes errors to the *request* pattern, where no caller listens, so its callers time out. An
///   error that does reach an Ascender caller on `_rpc:response` fails every pending and later call of that caller
///   (its shared response subject terminates). Courier therefore addresses errors to ``errorPattern``: Courier
///   callers (which read it) get the error, and Ascender callers time out exactly as they do with Ascender workers.
///   Received errors are recognised by their `response-` id and four-key payload on any pattern.
/// - Ascender has no streams: a streamed reply's elements carry `"isDisposed":false` (a Courier extension that
///   Ascender ignores; an Ascender caller keeps the first element), and the end of the stream is
///   `{"correlationId":"response-<id>","pattern":"_rpc:response","isDisposed":true}`. A reply without the key is
///   terminal, as in Ascender.
/// - Headers: a request's headers travel as a `courier-headers` object (Ascender has none; it ignores the key).
/// - Error codes: Ascender's generic code 500 reads as ``CourierError/Code/remote`` (502), not as Courier's
///   `encodingFailed` (also 500); any other code is kept.
/// - Deadlines: a request from a Courier caller carries `courier-timeout-ms`; an extension from a Courier handler is
///   `{"correlationId":"defer-<id>","pattern":"_rpc:response","payload":"defer","courier-extend-ms":N}` (Ascender's
///   own keep-waiting signal, with the amount). A `defer-` without the amount is ignored.
public enum AscenderEnvelope {
    /// The pattern (TCP) or channel (Redis) every reply is addressed to.
    public static let responsePattern = "_rpc:response"
    /// Where Courier addresses error replies (see the type's notes).
    public static let errorPattern = "_rpc:error"
    /// The prefix of a reply's correlation id.
    public static let responsePrefix = "response-"
    /// The prefix of a keep-waiting signal's correlation id.
    public static let deferPrefix = "defer-"

    /// Where an encoded reply goes: ``responsePattern`` or ``errorPattern``.
    public static func pattern(for reply: WireReply) -> String {
        reply.error != nil ? errorPattern : responsePattern
    }

    // MARK: Encoding

    /// Appends the JSON text of a request or event.
    ///
    /// - Parameters:
    ///   - request: The request or event.
    ///   - includesPattern: Whether the envelope names the pattern (TCP) or the channel does (Redis).
    public static func encode(_ request: WireRequest, includesPattern: Bool, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt8(ascii: "{"))
        if includesPattern {
            buffer.writeStaticString("\"pattern\":")
            NestJSEnvelope.writeJSONString(request.pattern, into: &buffer)
            buffer.writeInteger(UInt8(ascii: ","))
        }
        if !request.headers.isEmpty {
            buffer.writeStaticString("\"courier-headers\":")
            NestJSEnvelope.writeJSON(.object(request.headers.mapValues(JSONValue.string)), into: &buffer)
            buffer.writeInteger(UInt8(ascii: ","))
        }
        if let id = request.correlationID {
            buffer.writeStaticString("\"correlationId\":")
            NestJSEnvelope.writeJSONString(id, into: &buffer)
            buffer.writeInteger(UInt8(ascii: ","))
            if let timeout = request.timeout {
                buffer.writeStaticString("\"courier-timeout-ms\":")
                buffer.writeString(String(timeout.milliseconds))
                buffer.writeInteger(UInt8(ascii: ","))
            }
        }
        buffer.writeStaticString("\"payload\":")
        writeEmbedded(request.payload.readableBytes == 0 ? ByteBuffer(staticString: "null") : request.payload,
                      into: &buffer)
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// Appends the JSON text of a reply.
    ///
    /// - Parameters:
    ///   - reply: The reply packet.
    ///   - includesPattern: Whether the envelope names its pattern (TCP); on Redis the channel does.
    public static func encode(_ reply: WireReply, includesPattern: Bool, into buffer: inout ByteBuffer) {
        let isExtension = reply.extendDeadline != nil && reply.response == nil && !reply.isTerminal
        buffer.writeStaticString("{\"correlationId\":")
        NestJSEnvelope.writeJSONString((isExtension ? deferPrefix : responsePrefix) + reply.correlationID,
                                       into: &buffer)
        if includesPattern {
            buffer.writeStaticString(",\"pattern\":")
            NestJSEnvelope.writeJSONString(pattern(for: reply), into: &buffer)
        }
        if let error = reply.error {
            buffer.writeStaticString(",\"payload\":")
            NestJSEnvelope.writeJSON(errorObject(from: error), into: &buffer)
        } else if isExtension {
            buffer.writeStaticString(",\"payload\":\"defer\",\"courier-extend-ms\":")
            buffer.writeString(String(reply.extendDeadline!.milliseconds))
        } else if let response = reply.response {
            buffer.writeStaticString(",\"payload\":")
            writeEmbedded(response.readableBytes == 0 ? ByteBuffer(staticString: "null") : response, into: &buffer)
            if !reply.isDisposed { buffer.writeStaticString(",\"isDisposed\":false") }
        } else if reply.isDisposed {
            buffer.writeStaticString(",\"isDisposed\":true")
        }
        buffer.writeInteger(UInt8(ascii: "}"))
    }

    /// Ascender's error object for a Courier `err` value: `{"error","code","details","metadata"}`.
    public static func errorObject(from err: JSONValue) -> JSONValue {
        let caller = WireReply.callerError(from: err)
        let code: Int64 = caller.code == .remote && err.objectValue?["code"] == nil ? 500 : Int64(caller.code.rawValue)
        return [
            "error": .string(caller.message),
            "code": .integer(code),
            // Only details the error itself carried (a codeless `err` is its own details on the caller's side).
            "details": err.objectValue?["details"] ?? .null,
            "metadata": .object([:]),
        ]
    }

    // MARK: Decoding

    /// Decodes one envelope.
    ///
    /// - Parameters:
    ///   - buffer: The JSON text.
    ///   - channel: The Redis channel it came on (the pattern of a request or event), or nil on TCP, where the
    ///     envelope's `pattern` names it.
    /// - Returns: The packet, or nil for a packet to ignore (a `defer-` signal without an amount).
    /// - Throws: ``WireFormatError`` when the bytes are not a JSON object or not an Ascender packet.
    public static func decode(_ buffer: ByteBuffer, channel: String? = nil) throws(WireFormatError) -> WirePacket? {
        let object: [String: JSONValue]
        do {
            guard case .object(let members) = try JSONValue(parsing: Array(buffer.readableBytesView)) else {
                throw WireFormatError(reason: "an Ascender packet is a JSON object")
            }
            object = members
        } catch let error as WireFormatError {
            throw error
        } catch {
            throw WireFormatError(reason: "invalid JSON: \(error)")
        }
        let id = object["correlationId"]?.stringValue
        if let id, id.hasPrefix(responsePrefix) {
            return .reply(reply(id: String(id.dropFirst(responsePrefix.count)), object))
        }
        if let id, id.hasPrefix(deferPrefix) {
            guard let ms = object[NestJSEnvelope.extendKey]?.doubleValue else { return nil }
            return .reply(WireReply(correlationID: String(id.dropFirst(deferPrefix.count)),
                                    extendDeadline: .wireMilliseconds(ms)))
        }
        guard let pattern = channel ?? object["pattern"]?.stringValue else {
            throw WireFormatError(reason: "an Ascender request needs a 'pattern'")
        }
        var timeout: Duration?
        if let ms = object["courier-timeout-ms"]?.intValue, ms >= 0 { timeout = .milliseconds(ms) }
        var headers: [String: String] = [:]
        for (key, value) in object["courier-headers"]?.objectValue ?? [:] {
            headers[key] = value.stringValue ?? value.description
        }
        return .request(
            WireRequest(
                pattern: pattern,
                payload: embedded(object["payload"] ?? .null),
                correlationID: id,
                headers: headers,
                timeout: id == nil ? nil : timeout
            )
        )
    }

    private static func reply(id: String, _ object: [String: JSONValue]) -> WireReply {
        let payload = object["payload"]
        if let error = errorValue(from: payload) {
            return WireReply(correlationID: id, error: error, isDisposed: true)
        }
        let disposed = object["isDisposed"]?.boolValue
        if payload == nil, disposed == true {
            return WireReply(correlationID: id, isDisposed: true)
        }
        return WireReply(correlationID: id, response: embedded(payload ?? .null), isDisposed: disposed ?? true)
    }

    /// The Courier `err` value for an Ascender error payload (an object, or JSON text of one, with its four keys).
    private static func errorValue(from payload: JSONValue?) -> JSONValue? {
        var candidate = payload
        if let text = payload?.stringValue, text.utf8.first == UInt8(ascii: "{") {
            candidate = try? JSONValue(parsing: text)
        }
        guard let object = candidate?.objectValue,
            ["error", "code", "details", "metadata"].allSatisfy({ object[$0] != nil })
        else { return nil }
        var err: [String: JSONValue] = [
            "status": "error",
            "message": object["error"].flatMap(\.stringValue).map(JSONValue.string) ?? object["error"] ?? .null,
        ]
        // No code (and so `remote`) for Ascender's generic 500, which is not Courier's encodingFailed.
        if let code = object["code"]?.intValue, code != 500 { err["code"] = .integer(code) }
        if let details = object["details"], details != .null { err["details"] = details }
        return .object(err)
    }

    /// The payload as Courier carries it (JSON text): Ascender's JSON-in-a-string is unwrapped when it parses,
    /// anything else is kept as the JSON value it is.
    private static func embedded(_ payload: JSONValue) -> ByteBuffer {
        if case .string(let text) = payload, (try? JSONValue(parsing: text)) != nil {
            return ByteBuffer(string: text)
        }
        var buffer = ByteBuffer()
        NestJSEnvelope.writeJSON(payload, into: &buffer)
        return buffer
    }

    /// Writes JSON text as a JSON string literal (Ascender's double encoding).
    private static func writeEmbedded(_ json: ByteBuffer, into buffer: inout ByteBuffer) {
        NestJSEnvelope.writeJSONString(String(buffer: json), into: &buffer)
    }
}
