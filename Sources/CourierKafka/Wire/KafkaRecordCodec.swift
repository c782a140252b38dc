//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// The NestJS Kafka wire format: between Courier's transport-neutral packets (``WireRequest``, ``WireReply``) and
/// Kafka records (``KafkaRecordModel``). Pure: no I/O.
///
/// A request (topic = pattern, value per ``KafkaValueCodec``):
/// ```
/// topic    math.sum          value  [1,2,3]
/// headers  kafka_correlationId  = 0b6f1c7e-…        (UTF-8)
///          kafka_replyTopic     = math.sum.reply
///          kafka_replyPartition = 0                  (decimal text)
///          courier-timeout-ms   = 5000               (Courier callers only)
///          <application headers>                     (UTF-8)
/// ```
/// A reply goes to the request's reply topic and partition, echoing the correlation header **byte for byte** (so
/// Spring's 16-byte binary ids work as well as NestJS's UUID text). Its value is the response; an error is carried
/// by `kafka_nest-err` with a null value; the end of the stream by `kafka_nest-is-disposed` (one `0x00` byte).
/// An event has the request's topic, value and application headers, and no correlation or reply headers.
///
/// Courier's headers (`courier-timeout-ms`, `courier-extend-ms`) are ignored by NestJS and Spring peers.
/// When a header repeats, the last one counts, as with Spring's `lastHeader`.
public enum KafkaRecordCodec {
    /// Where a reply goes: the topic and, when the caller named one, the partition.
    public struct ReplyAddress: Sendable, Hashable {
        /// The reply topic.
        public var topic: String
        /// The reply partition, or `nil` to let the producer's partitioner choose.
        public var partition: Int32?

        /// Creates a reply address.
        public init(topic: String, partition: Int32?) {
            self.topic = topic
            self.partition = partition
        }
    }

    /// A request or event decoded from a record, with what a worker needs to reply.
    public struct InboundRequest: Sendable {
        /// The request (``WireRequest/correlationID`` set) or event (`nil`); the pattern is the record's topic.
        public var request: WireRequest
        /// Where to send replies; `nil` for an event.
        public var replyTo: ReplyAddress?
        /// The correlation header's original bytes, to echo verbatim in every reply; `nil` for an event.
        public var correlationBytes: [UInt8]?

        /// Creates an inbound request.
        public init(request: WireRequest, replyTo: ReplyAddress?, correlationBytes: [UInt8]?) {
            self.request = request
            self.replyTo = replyTo
            self.correlationBytes = correlationBytes
        }
    }

    /// The value of `kafka_nest-is-disposed`: NestJS sends exactly one `0x00` byte (only presence is read).
    public static let disposedMarker: [UInt8] = [0x00]

    // MARK: Requests and events

    /// The record for a request.
    ///
    /// Application headers are sent in key order; those named like protocol headers (`kafka_…`, `courier-…`) are
    /// left out, because a receiver would never hand them to a handler and they could spoof the protocol.
    ///
    /// - Parameters:
    ///   - request: A request: its ``WireRequest/correlationID`` must be set and non-empty.
    ///   - replyTo: The reply topic and partition this client reads (the partition header is left out when `nil`).
    ///   - format: How the correlation id and reply partition are encoded. Default: ``KafkaRequestHeaderFormat/nestJS``.
    /// - Throws: ``CourierError`` with code ``CourierError/Code/encodingFailed`` for a missing correlation id or a
    ///   payload that is not one JSON value; ``CourierError/Code/unprocessable`` for an illegal topic name.
    public static func encodeRequest(
        _ request: WireRequest,
        replyTo: ReplyAddress,
        format: KafkaRequestHeaderFormat = .nestJS
    ) throws -> KafkaRecordModel {
        guard let id = request.correlationID, !id.isEmpty else {
            // An empty id would make every receiver treat the record as an event and never reply.
            throw CourierError(.encodingFailed, "a Kafka request to '\(request.pattern)' needs a correlation id")
        }
        try KafkaTopicName.check(request.pattern)
        try KafkaTopicName.check(replyTo.topic)
        var headers: [KafkaRecordModel.Header] = [
            .init(name: KafkaHeaderName.correlationID, value: format.correlationBytes(for: id)),
            .init(name: KafkaHeaderName.replyTopic, text: replyTo.topic),
        ]
        if let partition = replyTo.partition {
            headers.append(.init(name: KafkaHeaderName.replyPartition, value: format.replyPartitionBytes(partition)))
        }
        if let timeout = request.timeout {
            headers.append(.init(name: KafkaHeaderName.timeoutMilliseconds, text: String(timeout.milliseconds)))
        }
        appendApplicationHeaders(request.headers, to: &headers)
        return KafkaRecordModel(
            topic: request.pattern,
            value: try KafkaValueCodec.encode(request.payload),
            headers: headers
        )
    }

    /// The record for an event: the pattern's topic, the value and the application headers only. A correlation id
    /// or timeout on `event` is ignored (events are never answered).
    ///
    /// - Throws: ``CourierError`` with code ``CourierError/Code/encodingFailed`` for a payload that is not one JSON
    ///   value; ``CourierError/Code/unprocessable`` for an illegal topic name.
    public static func encodeEvent(_ event: WireRequest) throws -> KafkaRecordModel {
        try KafkaTopicName.check(event.pattern)
        var headers: [KafkaRecordModel.Header] = []
        appendApplicationHeaders(event.headers, to: &headers)
        return KafkaRecordModel(
            topic: event.pattern,
            value: try KafkaValueCodec.encode(event.payload),
            headers: headers
        )
    }

    /// Decodes a record a worker received.
    ///
    /// It is an event when `kafka_correlationId` or `kafka_replyTopic` is missing or empty (NestJS's rule);
    /// otherwise a request, whose correlation id is the header's UTF-8 text, or lowercase hex when the bytes are
    /// not UTF-8 (Spring's 16 raw bytes), while ``InboundRequest/correlationBytes`` keeps the original bytes.
    /// The reply partition is read by ``KafkaReplyPartition/parse(_:)``; the timeout from `courier-timeout-ms`.
    /// Application headers (all but `kafka_…` and `courier-…`) become ``WireRequest/headers``; values that are
    /// null or not UTF-8 are skipped. The value is decoded by ``KafkaValueCodec/decode(_:)``; the key is ignored.
    ///
    /// A reply topic that is not UTF-8 is decoded lossily; it is not a legal topic, so the reply's
    /// ``encodeReply(_:correlationBytes:to:)`` fails and the worker can log why.
    public static func decodeRequest(_ record: KafkaRecordModel) -> InboundRequest {
        var headers: [String: String] = [:]
        for header in record.headers where !KafkaHeaderName.isReserved(header.name) {
            guard let value = header.value, let text = String(validating: value, as: UTF8.self) else { continue }
            headers[header.name] = text
        }
        let payload = KafkaValueCodec.decode(record.value)
        guard let id = nonEmptyHeader(KafkaHeaderName.correlationID, in: record),
            let topic = nonEmptyHeader(KafkaHeaderName.replyTopic, in: record)
        else {
            let event = WireRequest(pattern: record.topic, payload: payload, correlationID: nil, headers: headers)
            return InboundRequest(request: event, replyTo: nil, correlationBytes: nil)
        }
        let partition = nonEmptyHeader(KafkaHeaderName.replyPartition, in: record)
            .flatMap { KafkaReplyPartition.parse($0) }
        let request = WireRequest(
            pattern: record.topic,
            payload: payload,
            correlationID: correlationID(from: id),
            headers: headers,
            timeout: milliseconds(nonEmptyHeader(KafkaHeaderName.timeoutMilliseconds, in: record))
        )
        return InboundRequest(
            request: request,
            replyTo: ReplyAddress(topic: String(decoding: topic, as: UTF8.self), partition: partition),
            correlationBytes: id
        )
    }

    // MARK: Replies

    /// The record for one reply packet.
    ///
    /// - value: the response per ``KafkaValueCodec`` (`nil` when there is no response, when it is `null`, and on
    ///   errors, as NestJS sends error replies with a null value);
    /// - `kafka_correlationId`: `correlationBytes`, verbatim;
    /// - `kafka_nest-err` on an error: the text of a string error, the JSON of any other value (objects start with
    ///   `status` and `message`, as NestJS's exception filter writes them);
    /// - `kafka_nest-is-disposed` (one `0x00` byte) when the packet ends the stream, and on every error, which
    ///   ends it too;
    /// - `courier-extend-ms` for a deadline extension, in whole milliseconds.
    ///
    /// The packet's ``WireReply/status`` has no Kafka header and is not sent (NestJS's Kafka transport has none).
    ///
    /// A final `null` response (`isDisposed` with `null`) becomes a null value with the disposed header, which the
    /// receiving side reads as "no value": Courier callers decode that as `null` anyway, and NestJS callers
    /// deliver the `null`.
    ///
    /// - Throws: ``CourierError`` with code ``CourierError/Code/encodingFailed`` for a response that is not one
    ///   JSON value; ``CourierError/Code/unprocessable`` when the reply topic is not a legal topic name.
    public static func encodeReply(
        _ reply: WireReply,
        correlationBytes: [UInt8],
        to address: ReplyAddress
    ) throws -> KafkaRecordModel {
        try KafkaTopicName.check(address.topic)
        var headers: [KafkaRecordModel.Header] = [.init(name: KafkaHeaderName.correlationID, value: correlationBytes)]
        var value: [UInt8]?
        if let error = reply.error {
            headers.append(.init(name: KafkaHeaderName.nestError, value: errorHeaderValue(error)))
        } else if let response = reply.response {
            value = try KafkaValueCodec.encode(response)
        }
        if reply.isDisposed || reply.error != nil {
            headers.append(.init(name: KafkaHeaderName.nestIsDisposed, value: disposedMarker))
        }
        if let extend = reply.extendDeadline {
            headers.append(.init(name: KafkaHeaderName.extendMilliseconds, text: String(extend.milliseconds)))
        }
        return KafkaRecordModel(topic: address.topic, partition: address.partition, value: value, headers: headers)
    }

    /// Decodes a record a caller received on its reply topic.
    ///
    /// - Returns: `nil` when the record has no (or an empty) `kafka_correlationId`, which NestJS ignores too.
    ///   Otherwise the packet, with:
    ///   - the correlation id decoded as in ``decodeRequest(_:)``, except that with the ``KafkaRequestHeaderFormat/spring``
    ///     format 16 bytes are read as a UUID (the form that format sent);
    ///   - an error from `kafka_nest-err` as NestJS reads it: text starting with `{` or `[` that parses → that
    ///     JSON, anything else → a string; an empty or null header is no error (JavaScript's falsy `err`);
    ///   - ``WireReply/isDisposed`` when `kafka_nest-is-disposed` is present with any value, or `kafka_nest-err` is
    ///     (NestJS's deserializer treats both as the end);
    ///   - a response decoded by ``KafkaValueCodec/decode(_:)``, except that error records, and records with a
    ///     null value that end the stream or extend the deadline, carry **no** response: NestJS ends a stream with
    ///     a null-valued disposed record, which is not data;
    ///   - a deadline extension from `courier-extend-ms`.
    public static func decodeReply(
        _ record: KafkaRecordModel,
        format: KafkaRequestHeaderFormat = .nestJS
    ) -> WireReply? {
        guard let id = nonEmptyHeader(KafkaHeaderName.correlationID, in: record) else { return nil }
        let hasError = record.hasHeader(named: KafkaHeaderName.nestError)
        let error = (record.lastHeader(named: KafkaHeaderName.nestError) ?? nil).flatMap(errorValue(fromHeader:))
        let isDisposed = hasError || record.hasHeader(named: KafkaHeaderName.nestIsDisposed)
        let extend = milliseconds(nonEmptyHeader(KafkaHeaderName.extendMilliseconds, in: record))
        let response: ByteBuffer?
        if hasError || (record.value == nil && (isDisposed || extend != nil)) {
            response = nil
        } else {
            response = KafkaValueCodec.decode(record.value)
        }
        return WireReply(
            correlationID: format.correlationID(from: id),
            response: response,
            error: error,
            isDisposed: isDisposed,
            extendDeadline: extend
        )
    }

    // MARK: Helpers

    /// The correlation id text for header bytes: the UTF-8 text when the bytes are valid UTF-8 (NestJS's UUID
    /// text, Spring's text mode), else their lowercase hex (Spring's default 16 raw bytes). Replies must echo the
    /// original bytes, not this text.
    public static func correlationID(from bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        let digits = Array("0123456789abcdef".utf8)
        var hex: [UInt8] = []
        hex.reserveCapacity(bytes.count * 2)
        for byte in bytes {
            hex.append(digits[Int(byte >> 4)])
            hex.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: hex, as: UTF8.self)
    }

    /// The `kafka_nest-err` header value for an error.
    public static func errorHeaderValue(_ error: JSONValue) -> [UInt8] {
        switch error {
        case .string(let text):
            return Array(text.utf8)
        case .object(var members):
            // NestJS's exception filter builds `{status, message}` in that order; keep it so the bytes match what
            // NestJS peers send (`{"status":"error","message":"Internal server error"}`), then the rest sorted.
            var out: [UInt8] = [UInt8(ascii: "{")]
            for key in ["status", "message"] {
                guard let value = members.removeValue(forKey: key) else { continue }
                if out.count > 1 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(key, to: &out)
                out.append(UInt8(ascii: ":"))
                JSONWriter.append(value, to: &out)
            }
            if !members.isEmpty {
                var rest: [UInt8] = []
                JSONWriter.append(.object(members), to: &rest)
                if out.count > 1 { out.append(UInt8(ascii: ",")) }
                out.append(contentsOf: rest.dropFirst().dropLast())
            }
            out.append(UInt8(ascii: "}"))
            return out
        case .array, .null, .bool, .integer, .double:
            // NestJS would `toString()` a scalar; the JSON literal is the same text for numbers and booleans.
            return error.jsonBytes
        }
    }

    /// The error a `kafka_nest-err` header value carries, read as NestJS's deserializer does; `nil` for an empty
    /// value, which JavaScript treats as no error.
    public static func errorValue(fromHeader bytes: [UInt8]) -> JSONValue? {
        guard let first = bytes.first else { return nil }
        if first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let json = try? JSONValue(parsing: bytes) {
            return json
        }
        // Text, or binary (0x00 first) that NestJS would keep as a Buffer: a string either way, lossily for binary.
        return .string(String(decoding: bytes, as: UTF8.self))
    }

    /// Application headers in key order, so equal requests give equal records; protocol names are left out.
    private static func appendApplicationHeaders(
        _ source: [String: String],
        to headers: inout [KafkaRecordModel.Header]
    ) {
        // Most messages carry none: skip sorting (it went through generic code for an empty dictionary too).
        if source.isEmpty { return }
        for (name, value) in source.sorted(by: { $0.key < $1.key }) where !KafkaHeaderName.isReserved(name) {
            headers.append(.init(name: name, text: value))
        }
    }

    /// The last header with this name when its value is present and not empty.
    private static func nonEmptyHeader(_ name: String, in record: KafkaRecordModel) -> [UInt8]? {
        guard let value = record.lastHeader(named: name) ?? nil, !value.isEmpty else { return nil }
        return value
    }

    /// A whole number of milliseconds written as decimal digits; anything else (signs, fractions, overflow) is
    /// ignored rather than guessed at.
    private static func milliseconds(_ bytes: [UInt8]?) -> Duration? {
        guard let bytes, bytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            let value = Int64(String(decoding: bytes, as: UTF8.self))
        else { return nil }
        return .milliseconds(value)
    }
}
