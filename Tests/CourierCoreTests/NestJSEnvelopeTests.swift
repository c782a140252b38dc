//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

@testable import CourierCore
import NIOCore
import Testing

@Suite struct NestJSEnvelopeTests {
    /// The capacity a frame or message is allocated with covers every envelope whose strings need no escaping, so
    /// writing it never grows (reallocates and copies) the buffer: the largest timeout and extension, headers, a
    /// UUID correlation id, an empty payload (written as null).
    @Test func capacityCoversEveryPlainEnvelope() {
        let id = CorrelationID.make()
        let payloads = [ByteBuffer(), ByteBuffer(string: "[1,2,3]"), ByteBuffer(string: String(repeating: "7", count: 300))]
        let headerSets: [[String: String]] = [[:], ["tenant": "acme"], ["a": "1", "trace-id": "00-4bf92f-01", "b": ""]]
        let timeouts: [Duration?] = [nil, .milliseconds(1), .seconds(Int64.max / 1000)]
        for payload in payloads {
            for headers in headerSets {
                for timeout in timeouts {
                    for correlationID in [nil, id] {
                        let request = WireRequest(pattern: "orders.eu.created", payload: payload,
                                                  correlationID: correlationID, headers: headers, timeout: timeout)
                        var buffer = ByteBuffer()
                        NestJSEnvelope.encode(request, into: &buffer)
                        #expect(buffer.readableBytes <= NestJSEnvelope.capacity(for: request),
                                "\(String(buffer: buffer))")
                    }
                }
            }
            for extend in [nil, Duration.milliseconds(1), .seconds(Int64.max / 1000)] {
                for disposed in [false, true] {
                    let reply = WireReply(correlationID: id, response: payload, isDisposed: disposed, extendDeadline: extend)
                    var buffer = ByteBuffer()
                    NestJSEnvelope.encode(reply, into: &buffer)
                    #expect(buffer.readableBytes <= NestJSEnvelope.capacity(for: reply), "\(String(buffer: buffer))")
                }
            }
        }
    }

    static let id = "7c1d3b0e"

    // MARK: Helpers

    private func text(_ reply: WireReply) -> String {
        var buffer = ByteBuffer()
        NestJSEnvelope.encode(reply, into: &buffer)
        return String(buffer: buffer)
    }

    private func text(_ request: WireRequest) -> String {
        var buffer = ByteBuffer()
        NestJSEnvelope.encode(request, into: &buffer)
        return String(buffer: buffer)
    }

    private func decode(_ json: String) throws -> WirePacket {
        try NestJSEnvelope.decode(ByteBuffer(string: json))
    }

    private func decodeRequest(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws
        -> WireRequest
    {
        guard case .request(let request) = try decode(json) else {
            Issue.record("\(json) did not decode as a request", sourceLocation: sourceLocation)
            throw WireFormatError(reason: "not a request")
        }
        return request
    }

    private func decodeReply(_ json: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> WireReply {
        guard case .reply(let reply) = try decode(json) else {
            Issue.record("\(json) did not decode as a reply", sourceLocation: sourceLocation)
            throw WireFormatError(reason: "not a reply")
        }
        return reply
    }

    private func json(_ buffer: ByteBuffer?) -> String? {
        buffer.map { String(buffer: $0) }
    }

    // MARK: Encoding replies (byte for byte, wire notes §2)

    @Test func valueReplyEncodesExactly() {
        let reply = WireReply(correlationID: Self.id, response: ByteBuffer(string: "6"), isDisposed: true)
        #expect(text(reply) == #"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#)
    }

    @Test func streamElementAndDisposalEncodeExactly() {
        #expect(text(WireReply(correlationID: "s1", response: ByteBuffer(string: "1")))
            == #"{"response":1,"id":"s1"}"#)
        #expect(text(WireReply(correlationID: "s1", isDisposed: true)) == #"{"isDisposed":true,"id":"s1"}"#)
    }

    @Test func emptyResponseBufferEncodesAsNull() {
        let reply = WireReply(correlationID: "a", response: ByteBuffer(), isDisposed: true)
        #expect(text(reply) == #"{"response":null,"isDisposed":true,"id":"a"}"#)
    }

    @Test func genericErrorReplyUsesNestJSKeyOrder() {
        struct Boom: Error {}
        let reply = WireReply.failure(correlationID: Self.id, error: Boom())
        #expect(reply.isDisposed)
        #expect(
            text(reply)
                == #"{"err":{"status":"error","message":"Internal server error"},"isDisposed":true,"id":"7c1d3b0e"}"#
        )
    }

    @Test func courierErrorReplyKeepsCodeMessageAndDetails() throws {
        let error = CourierError(.unprocessable, "bad input", details: ["field": "qty"])
        let reply = WireReply.failure(correlationID: "e1", error: error)
        let decoded = try decodeReply(text(reply))
        #expect(decoded.isDisposed)
        let err = try #require(decoded.error)
        #expect(err["status"] == "error")
        #expect(err["message"] == "bad input")
        #expect(err["code"] == 422)
        #expect(err["details"] == ["field": "qty"])
        let surfaced = WireReply.callerError(from: err)
        #expect(surfaced.code == .unprocessable)
        #expect(surfaced.message == "bad input")
        #expect(surfaced.details == ["field": "qty"])
        #expect(surfaced.isRemote)
    }

    @Test func unknownPatternReplyEncodesExactly() {
        #expect(
            text(.noHandler(correlationID: Self.id))
                == #"{"id":"7c1d3b0e","status":"error","err":"There is no matching message handler defined in the remote service."}"#
        )
    }

    @Test func extensionReplyEncodesMilliseconds() {
        let reply = WireReply(correlationID: "x", extendDeadline: .milliseconds(1500))
        #expect(text(reply) == #"{"courier-extend-ms":1500,"id":"x"}"#)
    }

    @Test func idIsEscapedWhenNeeded() throws {
        let reply = WireReply(correlationID: "a\"b\\c", isDisposed: true)
        #expect(text(reply) == #"{"isDisposed":true,"id":"a\"b\\c"}"#)
        #expect(try decodeReply(text(reply)).correlationID == "a\"b\\c")
    }

    // MARK: Encoding requests and events

    @Test func requestEncodesExactly() {
        let request = WireRequest(
            pattern: "math.sum",
            payload: ByteBuffer(string: "[1,2,3]"),
            correlationID: Self.id
        )
        #expect(text(request) == #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#)
    }

    @Test func requestWithTimeoutCarriesItInMetadataBeforeID() {
        let request = WireRequest(
            pattern: "math.sum",
            payload: ByteBuffer(string: "[1,2,3]"),
            correlationID: Self.id,
            timeout: .milliseconds(1500)
        )
        #expect(
            text(request)
                == #"{"pattern":"math.sum","data":[1,2,3],"metadata":{"courier-timeout-ms":"1500"},"id":"7c1d3b0e"}"#
        )
    }

    @Test func requestHeadersAreSortedAndPrecedeTheTimeout() {
        let request = WireRequest(
            pattern: "p",
            payload: ByteBuffer(string: "1"),
            correlationID: "i",
            headers: ["trace": "t-1", "a\"b": "x"],
            timeout: .seconds(2)
        )
        #expect(
            text(request)
                == #"{"pattern":"p","data":1,"metadata":{"a\"b":"x","trace":"t-1","courier-timeout-ms":"2000"},"id":"i"}"#
        )
    }

    @Test func eventEncodesExactly() {
        let event = WireRequest(pattern: "user_created", payload: ByteBuffer(string: #"{"id":1}"#), correlationID: nil)
        #expect(event.isEvent)
        #expect(text(event) == #"{"pattern":"user_created","data":{"id":1}}"#)
    }

    @Test func eventNeverCarriesATimeout() {
        let event = WireRequest(
            pattern: "e",
            payload: ByteBuffer(string: "null"),
            correlationID: nil,
            timeout: .seconds(1)
        )
        #expect(text(event) == #"{"pattern":"e","data":null}"#)
    }

    @Test func emptyPayloadEncodesAsNull() {
        let request = WireRequest(pattern: "p", payload: ByteBuffer(), correlationID: "1")
        #expect(text(request) == #"{"pattern":"p","data":null,"id":"1"}"#)
    }

    // MARK: Decoding requests

    @Test func requestRoundTrips() throws {
        let request = try decodeRequest(#"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#)
        #expect(request.pattern == "math.sum")
        #expect(json(request.payload) == "[1,2,3]")
        #expect(request.correlationID == Self.id)
        #expect(!request.isEvent)
        #expect(request.headers.isEmpty)
        #expect(request.timeout == nil)
    }

    @Test func objectPatternRoutesAsNormalisedString() throws {
        let request = try decodeRequest(#"{"pattern":{"cmd":"sum"},"data":[1,2,3],"id":"7c1d3b0e"}"#)
        #expect(request.pattern == #"{"cmd":"sum"}"#)
        #expect(json(request.payload) == "[1,2,3]")
        let reordered = try decodeRequest(#"{"pattern":{"role":"admin","cmd":"sum"},"data":1,"id":"1"}"#)
        #expect(reordered.pattern == #"{"cmd":"sum","role":"admin"}"#)
    }

    @Test func stringPatternHoldingAnObjectIsRenormalised() throws {
        let request = try decodeRequest(#"{"pattern":"{\"role\":\"admin\",\"cmd\":\"sum\"}","data":null,"id":"1"}"#)
        #expect(request.pattern == #"{"cmd":"sum","role":"admin"}"#)
        // Text that merely starts with a brace but is not JSON stays as it is.
        let broken = try decodeRequest(#"{"pattern":"{not json","data":null,"id":"1"}"#)
        #expect(broken.pattern == "{not json")
    }

    @Test func numericPatternBecomesItsText() throws {
        #expect(try decodeRequest(#"{"pattern":42,"data":1,"id":"1"}"#).pattern == "42")
        #expect(try decodeRequest(#"{"pattern":-1.5,"data":1,"id":"1"}"#).pattern == "-1.5")
    }

    @Test func missingDataBecomesNullPayload() throws {
        let request = try decodeRequest(#"{"pattern":"p","id":"1"}"#)
        #expect(request.pattern == "p")
        #expect(json(request.payload) == "null")
    }

    @Test func dataWithoutPatternIsARequestWithEmptyPattern() throws {
        let request = try decodeRequest(#"{"data":{"a":[1, 2]},"id":"1"}"#)
        #expect(request.pattern == "")
        #expect(json(request.payload) == #"{"a":[1, 2]}"#)
    }

    @Test func eventHasNoID() throws {
        let event = try decodeRequest(#"{"pattern":"user_created","data":{"id":1}}"#)
        #expect(event.isEvent)
        #expect(event.correlationID == nil)
        #expect(event.pattern == "user_created")
        #expect(json(event.payload) == #"{"id":1}"#)
    }

    @Test func numericIDIsKeptAsText() throws {
        #expect(try decodeRequest(#"{"pattern":"p","data":1,"id":17}"#).correlationID == "17")
    }

    @Test func payloadSliceIgnoresSurroundingBytes() throws {
        var buffer = ByteBuffer(string: "xxxx")
        buffer.moveReaderIndex(forwardBy: 4)
        buffer.writeString(#" {"pattern":"p", "data" : [ 1 ,2 ] ,"id":"q"} "#)
        guard case .request(let request) = try NestJSEnvelope.decode(buffer) else {
            Issue.record("not a request")
            return
        }
        #expect(json(request.payload) == "[ 1 ,2 ]")
    }

    @Test func metadataBecomesHeadersAndTimeoutIsExtracted() throws {
        let request = try decodeRequest(
            #"{"pattern":"p","data":1,"metadata":{"trace":"abc","courier-timeout-ms":"250","n":5},"id":"1"}"#
        )
        #expect(request.headers == ["trace": "abc", "n": "5"])
        #expect(request.timeout == .milliseconds(250))
    }

    @Test func invalidTimeoutMetadataIsDroppedWithoutATimeout() throws {
        let request = try decodeRequest(#"{"pattern":"p","data":1,"metadata":{"courier-timeout-ms":"soon"},"id":"1"}"#)
        #expect(request.timeout == nil)
        #expect(request.headers.isEmpty)
    }

    @Test func requestWithTimeoutRoundTrips() throws {
        let original = WireRequest(
            pattern: "math.sum",
            payload: ByteBuffer(string: "[1]"),
            correlationID: "r",
            headers: ["tenant": "acme"],
            timeout: .milliseconds(750)
        )
        let decoded = try decodeRequest(text(original))
        #expect(decoded.pattern == "math.sum")
        #expect(decoded.correlationID == "r")
        #expect(decoded.headers == ["tenant": "acme"])
        #expect(decoded.timeout == .milliseconds(750))
        #expect(json(decoded.payload) == "[1]")
    }

    // MARK: Decoding replies

    @Test func replyWithResponseOnly() throws {
        let reply = try decodeReply(#"{"response":1,"id":"s1"}"#)
        #expect(reply.correlationID == "s1")
        #expect(json(reply.response) == "1")
        #expect(!reply.isDisposed)
        #expect(reply.error == nil)
        #expect(!reply.isTerminal)
    }

    @Test func replyWithDisposalOnly() throws {
        let reply = try decodeReply(#"{"isDisposed":true,"id":"s1"}"#)
        #expect(reply.response == nil)
        #expect(reply.isDisposed)
        #expect(reply.isTerminal)
    }

    @Test func replyWithValueAndDisposal() throws {
        let reply = try decodeReply(#"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#)
        #expect(json(reply.response) == "6")
        #expect(reply.isDisposed)
    }

    @Test func nullResponseIsAValue() throws {
        let reply = try decodeReply(#"{"response":null,"isDisposed":true,"id":"a"}"#)
        #expect(json(reply.response) == "null")
    }

    @Test func replyWithErrorAndDisposal() throws {
        let reply = try decodeReply(
            #"{"err":{"status":"error","message":"Internal server error"},"isDisposed":true,"id":"7c1d3b0e"}"#
        )
        #expect(reply.error == ["status": "error", "message": "Internal server error"])
        #expect(reply.isDisposed)
        #expect(reply.isTerminal)
    }

    @Test(arguments: ["null", "false", "0", #""""#])
    func falsyErrIsNoError(_ err: String) throws {
        let reply = try decodeReply(#"{"err":\#(err),"response":2,"id":"a"}"#)
        #expect(reply.error == nil)
        #expect(json(reply.response) == "2")
        #expect(!reply.isTerminal)
    }

    @Test func isDisposedFalseIsNotTerminal() throws {
        let reply = try decodeReply(#"{"response":3,"isDisposed":false,"id":"a"}"#)
        #expect(!reply.isDisposed)
        #expect(!reply.isTerminal)
        #expect(json(reply.response) == "3")
    }

    @Test func unknownPatternReplyDecodes() throws {
        let reply = try decodeReply(
            #"{"id":"7c1d3b0e","status":"error","err":"There is no matching message handler defined in the remote service."}"#
        )
        #expect(reply.status == "error")
        #expect(reply.error == .string(WireReply.noHandlerMessage))
        #expect(!reply.isDisposed)
        #expect(reply.isTerminal)
    }

    @Test func deadlineExtensionDecodes() throws {
        let reply = try decodeReply(#"{"courier-extend-ms":1500,"id":"x"}"#)
        #expect(reply.extendDeadline == .milliseconds(1500))
        #expect(reply.response == nil)
        #expect(!reply.isTerminal)
        let roundTrip = try decodeReply(text(WireReply(correlationID: "y", extendDeadline: .seconds(3))))
        #expect(roundTrip.extendDeadline == .seconds(3))
        #expect(roundTrip.correlationID == "y")
    }

    @Test func hugeOrNegativeDeadlineExtensionsAreCappedNotFatal() throws {
        // From the network: `Duration.milliseconds(1e30)` would trap, and 1e400 parses as infinity.
        for huge in ["1e30", "1e400", "179769313486231570000000000000000000"] {
            let reply = try decodeReply(#"{"courier-extend-ms":\#(huge),"id":"x"}"#)
            #expect(reply.extendDeadline == .milliseconds(1e15))
        }
        #expect(try decodeReply(#"{"courier-extend-ms":-5,"id":"x"}"#).extendDeadline == .zero)
        // A request carrying one is decoded too (the key is read on every packet).
        #expect(try decodeRequest(#"{"pattern":"p","data":1,"id":"1","courier-extend-ms":1e300}"#).pattern == "p")
    }

    @Test func millisecondsOfDurationsTooLongToCountSaturate() {
        #expect(Duration.seconds(Int64.max).milliseconds == .max)
        #expect(Duration.seconds(-5).milliseconds == 0)
        #expect(Duration.milliseconds(1500).milliseconds == 1500)
        let request = WireRequest(pattern: "p", payload: ByteBuffer(string: "1"), correlationID: "1", headers: [:],
                                  timeout: .seconds(Int64.max))
        #expect(text(request).contains(#""courier-timeout-ms":"9223372036854775807""#))
        #expect(text(WireReply(correlationID: "x", extendDeadline: .seconds(Int64.max)))
            == #"{"courier-extend-ms":9223372036854775807,"id":"x"}"#)
    }

    @Test func unknownKeysAreIgnored() throws {
        let reply = try decodeReply(#"{"response":1,"future":{"x":[1]},"id":"a"}"#)
        #expect(json(reply.response) == "1")
    }

    @Test func escapedKeysAreRecognised() throws {
        let request = try decodeRequest(#"{"p\u0061ttern":"math.sum","d\u0061ta":[1],"\u0069d":"q"}"#)
        #expect(request.pattern == "math.sum")
        #expect(json(request.payload) == "[1]")
        #expect(request.correlationID == "q")
        let reply = try decodeReply(#"{"\u0072esponse":5,"isDispose\u0064":true,"i\u0064":"r"}"#)
        #expect(json(reply.response) == "5")
        #expect(reply.isDisposed)
        #expect(reply.correlationID == "r")
    }

    @Test func escapedStringValuesAreDecoded() throws {
        let request = try decodeRequest(#"{"pattern":"caf\u00e9.\ud83d\ude00","data":1,"id":"a\nb"}"#)
        #expect(request.pattern == "café.😀")
        #expect(request.correlationID == "a\nb")
    }

    // MARK: Rejected input

    @Test(arguments: [
        "",
        "{",
        #"{"pattern":"p","data":}"#,
        #"{"pattern":"p","data":1,"id":"1"} trailing"#,
        #"{"pattern":'p'}"#,
        "[1,2,3]",
        #""pattern""#,
        "42",
        "null",
        "{}",
        #"{"status":"error"}"#,
        #"{"response":1}"#,
        #"{"foo":1,"bar":2}"#,
    ])
    func malformedPacketsThrowWireFormatError(_ json: String) {
        #expect(throws: WireFormatError.self, "\(json)") {
            _ = try NestJSEnvelope.decode(ByteBuffer(string: json))
        }
    }

    @Test func invalidUTF8IsRejected() {
        var buffer = ByteBuffer(string: #"{"pattern":""#)
        buffer.writeBytes([0xFF, 0xFE])
        buffer.writeString(#"","data":1}"#)
        #expect(throws: WireFormatError.self) { _ = try NestJSEnvelope.decode(buffer) }
    }

    // MARK: callerError

    @Test func callerErrorWithCodeKeepsCodeMessageAndDetails() {
        let error = WireReply.callerError(
            from: ["status": "error", "message": "nope", "code": 418, "details": ["x": 1]]
        )
        #expect(error.code == CourierError.Code(418))
        #expect(error.code.rawValue == 418)
        #expect(error.message == "nope")
        #expect(error.details == ["x": 1])
        #expect(error.isRemote)
    }

    @Test func callerErrorForNoHandlerText() {
        let error = WireReply.callerError(from: .string(WireReply.noHandlerMessage))
        #expect(error.code == .noHandler)
        #expect(error.message == WireReply.noHandlerMessage)
        #expect(error.isRemote)
    }

    @Test func callerErrorForPlainString() {
        let error = WireReply.callerError(from: "something broke")
        #expect(error.code == .remote)
        #expect(error.message == "something broke")
        #expect(error.isRemote)
    }

    @Test func callerErrorForObjectWithoutCode() {
        let err: JSONValue = ["status": "error", "message": "Internal server error"]
        let error = WireReply.callerError(from: err)
        #expect(error.code == .remote)
        #expect(error.message == "Internal server error")
        #expect(error.details == err)
        #expect(error.isRemote)
    }

    @Test func callerErrorForObjectWithoutMessageUsesItsJSON() {
        let error = WireReply.callerError(from: ["reason": "x"])
        #expect(error.code == .remote)
        #expect(error.message == #"{"reason":"x"}"#)
        #expect(error.details == ["reason": "x"])
    }

    @Test func callerErrorForOtherValues() {
        let error = WireReply.callerError(from: 7)
        #expect(error.code == .remote)
        #expect(error.message == "7")
        #expect(error.isRemote)
    }

    @Test func callerErrorWithNonIntegerCodeIsRemote() {
        let error = WireReply.callerError(from: ["message": "m", "code": "E42"])
        #expect(error.code == .remote)
        #expect(error.message == "m")
    }

    @Test func errorValueForNonCourierErrorIsNestJSGeneric() {
        struct Boom: Error {}
        #expect(WireReply.errorValue(for: Boom()) == ["status": "error", "message": "Internal server error"])
    }

    // MARK: NestPatternNormalizer

    @Test func objectKeysSortLikeLocaleCompare() {
        let pattern: JSONValue = ["cmd": "sum", "Role": "admin", "_v": 2]
        #expect(NestPatternNormalizer.routeString(for: pattern) == #"{"_v":2,"cmd":"sum","Role":"admin"}"#)
    }

    @Test func arraysBecomeIndexKeyedObjects() {
        #expect(NestPatternNormalizer.routeString(for: ["v": [1, 2]]) == #"{"v":{"0":1,"1":2}}"#)
        #expect(NestPatternNormalizer.routeString(for: ["a", "b"]) == #"{"0":"a","1":"b"}"#)
    }

    @Test func scalarsAndNestedValues() {
        #expect(NestPatternNormalizer.routeString(for: "math.sum") == "math.sum")
        #expect(NestPatternNormalizer.routeString(for: 42) == "42")
        #expect(NestPatternNormalizer.routeString(for: 2.0) == "2")
        #expect(NestPatternNormalizer.routeString(for: 2.5) == "2.5")
        #expect(NestPatternNormalizer.routeString(for: true) == "true")
        #expect(NestPatternNormalizer.routeString(for: nil) == "null")
        let nested: JSONValue = ["b": ["y": false, "x": nil], "a": 1.5]
        #expect(NestPatternNormalizer.routeString(for: nested) == #"{"a":1.5,"b":{"x":null,"y":false}}"#)
    }

    @Test func integersBeyondInt64AreWrittenInFullAsJavaScriptDoes() throws {
        // `Int64(1e20)` traps: a pattern number from the network must not.
        #expect(NestPatternNormalizer.javaScriptNumber(1e20) == "100000000000000000000")
        #expect(NestPatternNormalizer.javaScriptNumber(-1e19) == "-10000000000000000000")
        #expect(NestPatternNormalizer.javaScriptNumber(9_223_372_036_854_775_808) == "9223372036854776000")
        #expect(NestPatternNormalizer.javaScriptNumber(123_456_789_012_345_683_968) == "123456789012345680000")
        #expect(NestPatternNormalizer.javaScriptNumber(1e21) == "1e+21")
        #expect(try decodeRequest(#"{"pattern":{"cmd":1e20},"data":1,"id":"1"}"#).pattern
            == #"{"cmd":100000000000000000000}"#)
        #expect(try decodeRequest(#"{"pattern":[-1e19],"data":1}"#).pattern == #"{"0":-10000000000000000000}"#)
    }

    @Test func smallNumbersAreWrittenAsJavaScriptWritesThem() throws {
        // Node: String(0.00001) is "0.00001", String(1.5e-7) is "1.5e-7"; Swift writes "1e-05" and "1.5e-07".
        #expect(NestPatternNormalizer.javaScriptNumber(0.00001) == "0.00001")
        #expect(NestPatternNormalizer.javaScriptNumber(-0.00002) == "-0.00002")
        #expect(NestPatternNormalizer.javaScriptNumber(0.000123) == "0.000123")
        #expect(NestPatternNormalizer.javaScriptNumber(1.5e-7) == "1.5e-7")
        #expect(NestPatternNormalizer.javaScriptNumber(1e-7) == "1e-7")
        #expect(NestPatternNormalizer.javaScriptNumber(2.5e-300) == "2.5e-300")
        #expect(NestPatternNormalizer.javaScriptNumber(1.5e300) == "1.5e+300")
        #expect(NestPatternNormalizer.javaScriptNumber(123.456) == "123.456")
        #expect(try decodeRequest(#"{"pattern":{"v":0.00001},"data":1,"id":"1"}"#).pattern == #"{"v":0.00001}"#)
    }

    @Test func stringValuesAreNotEscaped() {
        // NestJS v10/v11 wrap string values in quotes without escaping.
        #expect(NestPatternNormalizer.routeString(for: ["q": "a\"b"]) == #"{"q":"a"b"}"#)
    }

    static let measuredOrder = ["_id", "10", "9", "a", "A", "b", "B", "e", "f", "id", "Z"]

    @Test func keyOrderMatchesMeasuredICUOrder() {
        var members: [String: JSONValue] = [:]
        for (index, key) in Self.measuredOrder.enumerated() { members[key] = .integer(Int64(index)) }
        let expected = "{" + Self.measuredOrder.enumerated().map { "\"\($0.element)\":\($0.offset)" }
            .joined(separator: ",") + "}"
        #expect(NestPatternNormalizer.routeString(for: .object(members)) == expected)
    }

    /// Keys with ASCII punctuation, in the order Node 20 (ICU 78, en-US) `localeCompare` sorts them: ICU ranks `_`
    /// before `-` before `:` and `.`, and `$` after every other symbol, unlike code-point order.
    static let measuredPunctuationOrder = ["a", "a_b", "A_b", "a-b", "a:b", "a.b", "a@b", "a/b", "a#b", "a~b", "a$b",
                                           "a0", "ab", "aB", "Ab"]

    @Test func punctuationInKeysSortsAsLocaleCompareDoes() {
        var members: [String: JSONValue] = [:]
        for key in Self.measuredPunctuationOrder { members[key] = 1 }
        let expected = "{" + Self.measuredPunctuationOrder.map { "\"\($0)\":1" }.joined(separator: ",") + "}"
        #expect(NestPatternNormalizer.routeString(for: .object(members)) == expected)
        #expect(Self.measuredPunctuationOrder.reversed().sorted(by: NestPatternNormalizer.localeLess)
            == Self.measuredPunctuationOrder)
    }

    @Test func localeLessIsAStrictOrderOverTheMeasuredKeys() {
        let keys = Self.measuredOrder
        for (i, lhs) in keys.enumerated() {
            for (j, rhs) in keys.enumerated() {
                #expect(NestPatternNormalizer.localeLess(lhs, rhs) == (i < j), "\(lhs) < \(rhs)")
            }
        }
        #expect(keys.reversed().sorted(by: NestPatternNormalizer.localeLess) == keys)
    }
}
