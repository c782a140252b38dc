//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Testing

/// The vectors are Ascender 2.1.0's bytes from the shared wire notes (§5.2, §5.3).
@Suite struct AscenderEnvelopeTests {
    private func text(_ request: WireRequest, includesPattern: Bool = true) -> String {
        var buffer = ByteBuffer()
        AscenderEnvelope.encode(request, includesPattern: includesPattern, into: &buffer)
        return String(buffer: buffer)
    }

    private func text(_ reply: WireReply, includesPattern: Bool = true) -> String {
        var buffer = ByteBuffer()
        AscenderEnvelope.encode(reply, includesPattern: includesPattern, into: &buffer)
        return String(buffer: buffer)
    }

    private func decode(_ json: String, channel: String? = nil) throws -> WirePacket? {
        try AscenderEnvelope.decode(ByteBuffer(string: json), channel: channel)
    }

    private func request(_ packet: WirePacket?) throws -> WireRequest {
        guard case .request(let request) = packet else { throw WireFormatError(reason: "not a request: \(String(describing: packet))") }
        return request
    }

    private func reply(_ packet: WirePacket?) throws -> WireReply {
        guard case .reply(let reply) = packet else { throw WireFormatError(reason: "not a reply: \(String(describing: packet))") }
        return reply
    }

    @Test func decodesAscenderRequestsAndEventsWithTheirDoubleEncodedPayload() throws {
        let tcp = try request(decode(#"{"pattern": "sum", "correlationId": "c0ffee", "payload": "[1, 2, 3]"}"#))
        #expect(tcp.pattern == "sum")
        #expect(tcp.correlationID == "c0ffee")
        #expect(String(buffer: tcp.payload) == "[1, 2, 3]")
        #expect(tcp.timeout == nil)

        let event = try request(decode(#"{"pattern": "user_created", "payload": "{\"id\": 1}"}"#))
        #expect(event.isEvent)
        #expect(String(buffer: event.payload) == #"{"id": 1}"#)

        // Redis: the channel is the pattern.
        let redis = try request(decode(#"{"correlationId": "c0ffee", "payload": "[1, 2, 3]"}"#, channel: "sum"))
        #expect(redis.pattern == "sum")
        #expect(redis.correlationID == "c0ffee")
    }

    @Test func decodesRepliesAndBothFormsOfAscenderErrors() throws {
        let six = try reply(decode(#"{"correlationId": "response-c0ffee", "pattern": "_rpc:response", "payload": "6"}"#))
        #expect(six.correlationID == "c0ffee")
        #expect(six.response.map { String(buffer: $0) } == "6")
        #expect(six.isTerminal, "Ascender replies are single")

        // TCP: the error object as such.
        let tcp = try reply(decode(
            #"{"correlationId": "response-c0ffee", "pattern": "sum", "payload": {"error": "teapot", "code": 418, "details": null, "metadata": {}}}"#
        ))
        #expect(tcp.isTerminal)
        let tcpError = WireReply.callerError(from: try #require(tcp.error))
        #expect(tcpError.code.rawValue == 418)
        #expect(tcpError.message == "teapot")

        // Redis: the error object as JSON text.
        let redis = try reply(decode(
            #"{"correlationId": "response-c0ffee", "payload": "{\"error\": \"Validation Error | Sum\", \"code\": 422, \"details\": \"[]\", \"metadata\": {\"err_count\": 1}}"}"#,
            channel: "sum"
        ))
        let redisError = WireReply.callerError(from: try #require(redis.error))
        #expect(redisError.code == .unprocessable)
        #expect(redisError.message == "Validation Error | Sum")
        #expect(redisError.details == "[]")
    }

    @Test func encodesRequestsAndRepliesAsAscenderReadsThem() {
        let request = WireRequest(pattern: "sum", payload: ByteBuffer(string: "[1,2,3]"), correlationID: "c0ffee",
                                  timeout: .seconds(5))
        #expect(text(request) == #"{"pattern":"sum","correlationId":"c0ffee","courier-timeout-ms":5000,"payload":"[1,2,3]"}"#)
        #expect(text(request, includesPattern: false) == #"{"correlationId":"c0ffee","courier-timeout-ms":5000,"payload":"[1,2,3]"}"#)
        let event = WireRequest(pattern: "user_created", payload: ByteBuffer(string: #"{"id":1}"#), correlationID: nil)
        #expect(text(event) == #"{"pattern":"user_created","payload":"{\"id\":1}"}"#)

        let six = WireReply(correlationID: "c0ffee", response: ByteBuffer(string: "6"), isDisposed: true)
        #expect(text(six) == #"{"correlationId":"response-c0ffee","pattern":"_rpc:response","payload":"6"}"#)
        #expect(text(six, includesPattern: false) == #"{"correlationId":"response-c0ffee","payload":"6"}"#)
        #expect(AscenderEnvelope.pattern(for: six) == "_rpc:response")
    }

    @Test func errorsGoToTheErrorPatternWithAscendersFourKeys() throws {
        let failure = WireReply.failure(correlationID: "c0ffee", error: CourierError(.unprocessable, "bad input"))
        #expect(AscenderEnvelope.pattern(for: failure) == "_rpc:error")
        #expect(text(failure) == #"{"correlationId":"response-c0ffee","pattern":"_rpc:error","payload":{"code":422,"details":null,"error":"bad input","metadata":{}}}"#)
        let generic = WireReply.failure(correlationID: "c0ffee", error: CancellationError())
        #expect(text(generic).contains(#""code":500"#))
        #expect(text(generic).contains(#""error":"Internal server error""#))

        // What Courier sends, Courier reads back to the same error.
        let back = try reply(decode(text(failure)))
        let error = WireReply.callerError(from: try #require(back.error))
        #expect(error.code == .unprocessable)
        #expect(error.message == "bad input")
    }

    @Test func streamsAndDeadlineExtensionsRoundTripBetweenCourierPeers() throws {
        let element = WireReply(correlationID: "s1", response: ByteBuffer(string: "3"), isDisposed: false)
        #expect(text(element) == #"{"correlationId":"response-s1","pattern":"_rpc:response","payload":"3","isDisposed":false}"#)
        let elementBack = try reply(decode(text(element)))
        #expect(!elementBack.isTerminal)
        #expect(elementBack.response.map { String(buffer: $0) } == "3")

        let end = WireReply(correlationID: "s1", isDisposed: true)
        let endBack = try reply(decode(text(end)))
        #expect(endBack.isTerminal)
        #expect(endBack.response == nil)

        let extend = WireReply(correlationID: "s1", extendDeadline: .milliseconds(1500))
        #expect(text(extend) == #"{"correlationId":"defer-s1","pattern":"_rpc:response","payload":"defer","courier-extend-ms":1500}"#)
        #expect(try reply(decode(text(extend))).extendDeadline == .milliseconds(1500))
        // Ascender's own defer says nothing about how long: ignored.
        #expect(try decode(#"{"correlationId": "defer-s1", "payload": "defer"}"#, channel: "sum") == nil)
    }

    @Test func hugeDeadlineExtensionIsCappedNotFatal() throws {
        let packet = #"{"correlationId":"defer-s1","pattern":"_rpc:response","payload":"defer","courier-extend-ms":1e300}"#
        #expect(try reply(decode(packet)).extendDeadline == .milliseconds(1e15))
    }

    @Test func rejectsWhatIsNotAnAscenderPacket() {
        for bad in ["not json", "[1,2]", #"{"correlationId":"x","payload":"1"}"#, ""] {
            #expect(throws: WireFormatError.self, "\(bad)") { try decode(bad) }
        }
    }
}
