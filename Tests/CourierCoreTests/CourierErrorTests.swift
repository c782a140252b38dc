//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Testing

@Suite struct CourierErrorTests {
    // MARK: Equality and description

    @Test func equalityComparesTheCodeOnly() {
        let a = CourierError(.timedOut, "first", details: ["x": 1])
        var b = CourierError(.timedOut, "second")
        b.isRemote = true
        #expect(a == b)
        #expect(a.hashValue == b.hashValue)
        #expect(Set([a, b]).count == 1)
        #expect(a != CourierError(.cancelled, "first", details: ["x": 1]))
        #expect(CourierError(418, "x") == CourierError(.init(rawValue: 418), "y"))
    }

    @Test func equalityLetsACatchMatchOnCode() {
        func fail() throws { throw CourierError.timedOut("math.sum", after: .seconds(2)) }
        #expect(throws: CourierError(.timedOut, "any message")) { try fail() }
    }

    @Test func descriptionNamesCodeMessageDetailsAndUnderlying() {
        struct Cause: Error, CustomStringConvertible { var description: String { "disk full" } }
        #expect(CourierError(.timedOut, "slow").description == "timedOut(408): slow")
        #expect(CourierError(418, "teapot").description == "code(418): teapot")
        let detailed = CourierError(.unprocessable, "bad", details: ["field": "qty"], underlying: Cause())
        #expect(detailed.description == #"unprocessable(422): bad {"field":"qty"} (underlying: disk full)"#)
    }

    @Test(arguments: [
        (CourierError.Code.decodingFailed, 400, "decodingFailed(400)"),
        (.timedOut, 408, "timedOut(408)"),
        (.payloadTooLarge, 413, "payloadTooLarge(413)"),
        (.unprocessable, 422, "unprocessable(422)"),
        (.cancelled, 499, "cancelled(499)"),
        (.encodingFailed, 500, "encodingFailed(500)"),
        (.noHandler, 501, "noHandler(501)"),
        (.remote, 502, "remote(502)"),
        (.transportUnavailable, 503, "transportUnavailable(503)"),
    ])
    func codesHaveStableValuesAndNames(_ code: CourierError.Code, _ raw: Int, _ name: String) {
        #expect(code.rawValue == raw)
        #expect(code.description == name)
        #expect(CourierError.Code(raw) == code)
    }

    @Test func conveniencesUseTheirCodes() {
        #expect(CourierError.timedOut("p").code == .timedOut)
        #expect(CourierError.timedOut("p").message.contains("'p'"))
        #expect(CourierError.timedOut("p", after: .milliseconds(50)).message.contains("within 0.05 seconds"))
        #expect(CourierError.cancelled("p").code == .cancelled)
        #expect(CourierError.unavailable("down").code == .transportUnavailable)
        #expect(CourierError.unavailable("down").message == "down")
        #expect(!CourierError.unavailable("down").isRemote)
    }

    @Test func wrappingKeepsCourierErrorsAndWrapsOthers() {
        struct Other: Error {}
        let original = CourierError(.noHandler, "none")
        let kept = CourierError.wrapping(original, as: .transportUnavailable, "ignored")
        #expect(kept.code == .noHandler)
        #expect(kept.message == "none")
        let wrapped = CourierError.wrapping(Other(), as: .transportUnavailable, "cannot connect")
        #expect(wrapped.code == .transportUnavailable)
        #expect(wrapped.message.hasPrefix("cannot connect: "))
        #expect(wrapped.underlying is Other)
    }

    // MARK: Correlation ids

    @Test func correlationIDIsLowercaseUUIDv4Text() throws {
        let pattern = try Regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
        for _ in 0..<1_000 {
            let id = CorrelationID.make()
            #expect(id.utf8.count == 36)
            #expect(id.wholeMatch(of: pattern) != nil, "\(id)")
        }
    }

    @Test func correlationIDsAreUniqueOverTenThousand() {
        let ids = (0..<10_000).map { _ in CorrelationID.make() }
        #expect(Set(ids).count == 10_000)
    }

    @Test func correlationIDsAreUniqueAcrossConcurrentCallers() async {
        let ids = await withTaskGroup(of: [String].self) { group in
            for _ in 0..<8 {
                group.addTask { (0..<2_000).map { _ in CorrelationID.make() } }
            }
            return await group.reduce(into: [String]()) { $0 += $1 }
        }
        #expect(Set(ids).count == 16_000)
    }

    // MARK: PayloadCoder

    struct Item: Codable, Equatable, Sendable { var qty: Int }
    struct Order: Codable, Equatable, Sendable { var items: [Item] }

    @Test func decodeFailureNamesTheTypeAndPath() throws {
        let coder = PayloadCoder()
        let error = #expect(throws: CourierError.self) {
            _ = try coder.decode(Order.self, from: ByteBuffer(string: #"{"items":[{"qty":1},{"qty":"two"}]}"#))
        }
        #expect(error?.code == .decodingFailed)
        let message = try #require(error?.message)
        #expect(message.contains("Order"), "\(message)")
        #expect(message.contains(".items[1].qty"), "\(message)")
        #expect(message.contains("Int"), "\(message)")
        #expect(error?.underlying is DecodingError)
    }

    @Test func decodeFailureForAMissingKeyNamesTheKey() throws {
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().decode(Order.self, from: ByteBuffer(string: #"{"items":[{}]}"#))
        }
        let message = try #require(error?.message)
        #expect(message.contains("missing key 'qty' at .items[0]"), "\(message)")
    }

    @Test func decodeFailureAtTopLevelSaysSo() throws {
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().decode(Int.self, from: ByteBuffer(string: #""six""#))
        }
        let message = try #require(error?.message)
        #expect(message.contains("could not decode Int from \"six\""), "\(message)")
        #expect(message.contains("top level"), "\(message)")
    }

    @Test func decodeFailurePreviewIsTruncated() throws {
        let long = "\"" + String(repeating: "x", count: 500) + "\""
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().decode(Int.self, from: ByteBuffer(string: long))
        }
        let message = try #require(error?.message)
        #expect(message.contains(String(repeating: "x", count: 119) + "…"), "\(message)")
        #expect(!message.contains(String(repeating: "x", count: 121)))
    }

    @Test func codableRoundTrip() throws {
        let coder = PayloadCoder()
        let order = Order(items: [Item(qty: 2), Item(qty: 3)])
        let encoded = try coder.encode(order)
        #expect(try coder.decode(Order.self, from: encoded) == order)
        #expect(String(buffer: try coder.encode("a/b")) == #""a/b""#)
    }

    @Test func missingReplyDecodesAsNull() throws {
        let coder = PayloadCoder()
        #expect(try coder.decode(JSONValue.self, from: nil) == .null)
        #expect(try coder.decode(Int?.self, from: nil) == nil)
        #expect(try coder.decode(NoPayload.self, from: nil) == NoPayload())
        #expect(String(buffer: try coder.encode(NoPayload())) == "null")
    }

    @Test func jsonValuesUseCouriersOwnWriterAndParser() throws {
        let coder = PayloadCoder()
        #expect(String(buffer: try coder.encode(["b": 1, "a": [true, nil]] as JSONValue)) == #"{"a":[true,null],"b":1}"#)
        #expect(try coder.decode(JSONValue.self, from: ByteBuffer(string: #" {"x": [1, 2.5]} "#)) == ["x": [1, 2.5]])
        let error = #expect(throws: CourierError.self) {
            _ = try coder.decode(JSONValue.self, from: ByteBuffer(string: "{nope"))
        }
        #expect(error?.code == .decodingFailed)
    }

    @Test func rawBuffersPassThrough() throws {
        let coder = PayloadCoder()
        let raw = ByteBuffer(string: "[1, 2]")
        #expect(try coder.encode(raw) == raw)
        #expect(try coder.decode(ByteBuffer.self, from: raw) == raw)
    }

    @Test func encodeFailureIsEncodingFailed() {
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().encode(Double.nan)
        }
        #expect(error?.code == .encodingFailed)
        #expect(error?.message.contains("Double") == true)
    }
}
