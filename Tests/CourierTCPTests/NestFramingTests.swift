//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
@testable import CourierTCP
import CourierTestSupport
import CourierTesting
import NIOCore
import NIOEmbedded
import Testing

/// The NestJS TCP framing (`<utf16 length>#<json>`), checked against the byte vectors of the wire notes (§2).
@Suite(.cpuBound) struct NestFramingTests {
    // MARK: Vectors (wire notes §2, normative)

    static let requestVector = #"56#{"pattern":{"cmd":"sum"},"data":[1,2,3],"id":"7c1d3b0e"}"#
    static let responseVector = #"48#{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#
    static let streamVector = #"24#{"response":1,"id":"s1"}24#{"response":2,"id":"s1"}29#{"isDisposed":true,"id":"s1"}"#
    static let eventVector = #"42#{"pattern":"user_created","data":{"id":1}}"#
    static let errorVector =
        #"94#{"err":{"status":"error","message":"Internal server error"},"isDisposed":true,"id":"7c1d3b0e"}"#
    static let unknownPatternVector =
        #"110#{"id":"7c1d3b0e","status":"error","err":"There is no matching message handler defined in the remote service."}"#
    static let unicodeVector = #"32#{"response":"héllo 😀","id":"a"}"#

    static let allVectors = [
        requestVector, responseVector, streamVector, eventVector, errorVector, unknownPatternVector, unicodeVector,
    ]

    /// The JSON bodies of every frame in `vectors`, in order (split by hand from the vector text).
    static func bodies(of vectors: [String]) -> [String] {
        var bodies: [String] = []
        for vector in vectors {
            var rest = Substring(vector)
            while let hash = rest.firstIndex(of: "#") {
                let units = Int(rest[..<hash])!
                let body = rest[rest.index(after: hash)...]
                // Cut `units` UTF-16 code units.
                let end = body.utf16.index(body.startIndex, offsetBy: units)
                bodies.append(String(body[..<end]))
                rest = body[end...]
            }
        }
        return bodies
    }

    // MARK: Harness

    /// An `EmbeddedChannel` with a ``NestFrameDecoder``, active as a connected socket would be.
    struct Decoder {
        let channel: EmbeddedChannel

        init(maxFrameLength: Int = 1 << 20, incompleteFrameTimeout: TimeAmount? = nil) throws {
            channel = EmbeddedChannel(
                handler: NestFrameDecoder(maxFrameLength: maxFrameLength, incompleteFrameTimeout: incompleteFrameTimeout)
            )
            channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1), promise: nil)
            channel.embeddedEventLoop.run()
        }

        func feed(_ bytes: some Collection<UInt8>) throws {
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        }

        func feed(_ text: String) throws {
            try feed(Array(text.utf8))
        }

        /// Every frame body decoded so far.
        func frames() throws -> [String] {
            var frames: [String] = []
            while let body = try channel.readInbound(as: ByteBuffer.self) {
                frames.append(String(buffer: body))
            }
            return frames
        }

        var isActive: Bool { channel.isActive }

        func finish() {
            _ = try? channel.finish()
        }
    }

    // MARK: The vectors are what the notes say

    @Test(arguments: allVectors)
    func vectorPrefixesCountUTF16Units(_ vector: String) {
        let bodies = Self.bodies(of: [vector])
        #expect(!bodies.isEmpty)
        // Re-framing each body by its UTF-16 length reproduces the vector exactly.
        #expect(bodies.map { "\($0.utf16.count)#\($0)" }.joined() == vector)
    }

    @Test func unicodeVectorIsThirtyTwoUnitsButThirtyFiveBytes() {
        let body = #"{"response":"héllo 😀","id":"a"}"#
        #expect(body.utf16.count == 32)
        #expect(body.utf8.count == 35)
        #expect(Array(body.utf8).withUnsafeBytes { NestFraming.utf16Length(of: $0) } == 32)
        #expect(Self.unicodeVector == "32#" + body)
    }

    // MARK: Encoding: NestFraming produces the vectors byte for byte

    @Test func framedRepliesMatchTheVectors() {
        func framed(_ reply: WireReply) -> String { String(buffer: NestFraming.frame(reply)) }
        #expect(
            framed(WireReply(correlationID: "7c1d3b0e", response: ByteBuffer(string: "6"), isDisposed: true))
                == Self.responseVector
        )
        let stream = [
            WireReply(correlationID: "s1", response: ByteBuffer(string: "1")),
            WireReply(correlationID: "s1", response: ByteBuffer(string: "2")),
            WireReply(correlationID: "s1", isDisposed: true),
        ]
        #expect(stream.map(framed).joined() == Self.streamVector)
        struct Boom: Error {}
        #expect(framed(.failure(correlationID: "7c1d3b0e", error: Boom())) == Self.errorVector)
        #expect(framed(.noHandler(correlationID: "7c1d3b0e")) == Self.unknownPatternVector)
        #expect(
            framed(WireReply(correlationID: "a", response: ByteBuffer(string: #""héllo 😀""#)))
                == Self.unicodeVector
        )
    }

    @Test func framedRequestsAndEventsMatchTheVectors() {
        let event = WireRequest(pattern: "user_created", payload: ByteBuffer(string: #"{"id":1}"#), correlationID: nil)
        #expect(String(buffer: NestFraming.frame(event)) == Self.eventVector)
        let request = WireRequest(pattern: "math.sum", payload: ByteBuffer(string: "[1,2,3]"), correlationID: "7c1d3b0e")
        let body = #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#
        #expect(String(buffer: NestFraming.frame(request)) == "\(body.utf16.count)#\(body)")
        #expect(NestFraming.bodyLength(of: NestFraming.frame(request)) == body.utf16.count)
    }

    @Test(arguments: [
        ("ascii", #""plain text""#),
        ("latin", #""héllo wörld ñ""#),
        ("emoji", #""😀🎉 family 👨‍👩‍👧""#),
        ("cjk", #""漢字かなカナ한국어""#),
        ("mixed", #"{"name":"Zoë 🐈","tags":["日本","ü"],"n":1}"#),
        ("escapes", #""line\nbreak \"quoted\" tab\t""#),
    ])
    func framePrefixIsTheUTF16LengthOfTheJSONText(_ name: String, _ payload: String) throws {
        let reply = WireReply(correlationID: "id-\(name)", response: ByteBuffer(string: payload), isDisposed: true)
        let frame = NestFraming.frame(reply)
        let text = String(buffer: frame)
        let hash = try #require(text.firstIndex(of: "#"))
        let body = String(text[text.index(after: hash)...])
        #expect(Int(text[..<hash]) == body.utf16.count, "\(text)")
        #expect(NestFraming.bodyLength(of: frame) == body.utf16.count)
        #expect(body == #"{"response":\#(payload),"isDisposed":true,"id":"id-\#(name)"}"#)

        // And the decoder cuts exactly that body back out.
        let decoder = try Decoder()
        defer { decoder.finish() }
        try decoder.feed(frame.readableBytesView)
        #expect(try decoder.frames() == [body])
    }

    // MARK: Decoding the vectors

    @Test func vectorsDecodeToTheRightPackets() throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        try decoder.feed(Self.allVectors.joined())
        let frames = try decoder.frames()
        #expect(frames == Self.bodies(of: Self.allVectors))
        let packets = try frames.map { try NestJSEnvelope.decode(ByteBuffer(string: $0)) }
        try #require(packets.count == 9)

        guard case .request(let request) = packets[0] else { Issue.record("request: \(packets[0])"); return }
        #expect(request.pattern == #"{"cmd":"sum"}"#)
        #expect(String(buffer: request.payload) == "[1,2,3]")
        #expect(request.correlationID == "7c1d3b0e")

        guard case .reply(let response) = packets[1] else { Issue.record("response: \(packets[1])"); return }
        #expect(response.correlationID == "7c1d3b0e")
        #expect(response.response.map { String(buffer: $0) } == "6")
        #expect(response.isDisposed)

        let stream = packets[2...4].compactMap { packet -> WireReply? in
            if case .reply(let reply) = packet { reply } else { nil }
        }
        #expect(stream.map(\.correlationID) == ["s1", "s1", "s1"])
        #expect(stream.map { $0.response.map { String(buffer: $0) } } == ["1", "2", nil])
        #expect(stream.map(\.isDisposed) == [false, false, true])

        guard case .request(let event) = packets[5] else { Issue.record("event: \(packets[5])"); return }
        #expect(event.isEvent)
        #expect(event.pattern == "user_created")
        #expect(String(buffer: event.payload) == #"{"id":1}"#)

        guard case .reply(let failure) = packets[6] else { Issue.record("error: \(packets[6])"); return }
        #expect(failure.error == ["status": "error", "message": "Internal server error"])
        #expect(failure.isDisposed)
        #expect(WireReply.callerError(from: failure.error!).code == .remote)

        guard case .reply(let unknown) = packets[7] else { Issue.record("unknown: \(packets[7])"); return }
        #expect(unknown.status == "error")
        #expect(WireReply.callerError(from: unknown.error!).code == .noHandler)
        #expect(unknown.isTerminal)

        guard case .reply(let unicode) = packets[8] else { Issue.record("unicode: \(packets[8])"); return }
        #expect(unicode.response.map { String(buffer: $0) } == #""héllo 😀""#)
        #expect(unicode.correlationID == "a")
    }

    @Test func splitAtEveryBytePositionDecodesIdentically() throws {
        let bytes = Array(Self.allVectors.joined().utf8)
        let expected = Self.bodies(of: Self.allVectors)
        for split in 0...bytes.count {
            let decoder = try Decoder()
            defer { decoder.finish() }
            try decoder.feed(bytes[..<split])
            try decoder.feed(bytes[split...])
            #expect(try decoder.frames() == expected, "split at \(split)")
        }
    }

    @Test func unicodeFrameSplitIntoThreePiecesEverywhereDecodesIdentically() throws {
        // Covers splits inside the length prefix, inside é (2 bytes) and inside 😀 (4 bytes), in pairs.
        let bytes = Array((Self.unicodeVector + Self.unicodeVector).utf8)
        let body = #"{"response":"héllo 😀","id":"a"}"#
        for first in 0...bytes.count {
            for second in first...bytes.count {
                let decoder = try Decoder()
                defer { decoder.finish() }
                try decoder.feed(bytes[..<first])
                try decoder.feed(bytes[first..<second])
                try decoder.feed(bytes[second...])
                #expect(try decoder.frames() == [body, body], "split at \(first), \(second)")
            }
        }
    }

    @Test func oneByteAtATimeDecodesIdentically() throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        var frames: [String] = []
        for byte in Self.allVectors.joined().utf8 {
            try decoder.feed([byte])
            frames += try decoder.frames()
        }
        #expect(frames == Self.bodies(of: Self.allVectors))
    }

    @Test func severalFramesInOneReadArriveInOrder() throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        try decoder.feed(Self.streamVector + Self.responseVector)
        #expect(try decoder.frames() == [
            #"{"response":1,"id":"s1"}"#,
            #"{"response":2,"id":"s1"}"#,
            #"{"isDisposed":true,"id":"s1"}"#,
            #"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#,
        ])
        #expect(decoder.isActive)
    }

    @Test func manyFramesInArbitraryChunksSurviveBufferCompaction() throws {
        // Enough data to pass the decoder's 64 KiB compaction threshold many times, with frames in progress.
        let bodies = (0..<3_000).map { #"{"response":"élément \#($0) 😀","id":"c\#($0)"}"# }
        let bytes = Array(bodies.map { "\($0.utf16.count)#\($0)" }.joined().utf8)
        let decoder = try Decoder()
        defer { decoder.finish() }
        var frames: [String] = []
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + 777)
            try decoder.feed(bytes[start..<end])
            frames += try decoder.frames()
            start = end
        }
        #expect(frames.count == bodies.count)
        #expect(frames == bodies)
    }

    @Test func largeFrameArrivingInManyReads() throws {
        let body = #"{"response":""# + String(repeating: "ab€😀", count: 20_000) + #"","id":"big"}"#
        let bytes = Array("\(body.utf16.count)#\(body)".utf8)
        let decoder = try Decoder(maxFrameLength: 1 << 20)
        defer { decoder.finish() }
        var start = 0
        while start < bytes.count {
            let end = min(bytes.count, start + 1_000)
            try decoder.feed(bytes[start..<end])
            if end < bytes.count { #expect(try decoder.frames().isEmpty) }
            start = end
        }
        #expect(try decoder.frames() == [body])
    }

    @Test func zeroLengthFrameIsAnEmptyBody() throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        try decoder.feed("0#2#{}")
        #expect(try decoder.frames() == ["", "{}"])
    }

    @Test func frameExactlyAtTheLimitIsAccepted() throws {
        let body = #"{"x":""# + String(repeating: "y", count: 92) + #""}"#
        #expect(body.utf16.count == 100)
        let decoder = try Decoder(maxFrameLength: 100)
        defer { decoder.finish() }
        try decoder.feed("100#" + body)
        #expect(try decoder.frames() == [body])
        #expect(decoder.isActive)
    }

    // MARK: Rejected streams

    @Test(arguments: ["x5#{}", "12a#{}", "-1#{}", " 2#{}", "#{}", "2#{}3x#", "+2#{}"])
    func corruptedLengthPrefixFailsAndCloses(_ input: String) throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        #expect(decoder.isActive)
        let error = #expect(throws: FrameError.self, "\(input)") { try decoder.feed(input) }
        #expect(error?.reason.contains("corrupted length prefix") == true, "\(String(describing: error))")
        #expect(!decoder.isActive)
        // Whatever complete frame came before the corruption was delivered; nothing after it is.
        let frames = try decoder.frames()
        #expect(frames == (input.hasPrefix("2#{}") ? ["{}"] : []))
    }

    @Test func moreThanTwelveDigitsFailsBeforeTheHashArrives() throws {
        let decoder = try Decoder()
        defer { decoder.finish() }
        try decoder.feed("123456789012")
        #expect(decoder.isActive)
        let error = #expect(throws: FrameError.self) { try decoder.feed("3") }
        #expect(error?.reason.contains("more than 12 digits") == true)
        #expect(!decoder.isActive)
    }

    @Test func declaredLengthAboveTheLimitFailsBeforeTheBody() throws {
        let decoder = try Decoder(maxFrameLength: 1_000)
        defer { decoder.finish() }
        let error = #expect(throws: FrameError.self) { try decoder.feed("1001#") }
        #expect(error?.reason.contains("exceeds the limit of 1000") == true)
        #expect(!decoder.isActive)
    }

    @Test func lengthEndingInsideASurrogatePairIsRejected() throws {
        // `{"a":"😀"}` is 10 UTF-16 units; 7 ends between the two halves of 😀.
        let decoder = try Decoder()
        defer { decoder.finish() }
        let error = #expect(throws: FrameError.self) { try decoder.feed(#"7#{"a":"😀"}"#) }
        #expect(error?.reason.contains("surrogate pair") == true)
        #expect(!decoder.isActive)
        #expect(try decoder.frames().isEmpty)

        let lone = try Decoder()
        defer { lone.finish() }
        #expect(throws: FrameError.self) { try lone.feed("1#😀") }
        let whole = try Decoder()
        defer { whole.finish() }
        try whole.feed("2#😀")
        #expect(try whole.frames() == ["😀"])
    }

    // MARK: Hostile bytes

    /// Bytes from the network never crash the frame decoder or the packet decoder after it: mutated frames
    /// (seeded, so a failure repeats), split at random points, are decoded, refused, or close the connection.
    @Test func mutatedStreamsNeverCrashTheDecoders() async throws {
        var random = SeededRandom(state: 0x7C9_F4A3E)
        let frames = [
            #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#,
            #"{"response":"😀é","isDisposed":true,"id":"x"}"#,
            #"{"courier-extend-ms":1e30,"id":"x"}"#,
        ]
        let pieces = ["#", "99999999999999#", "-1#", "0#", "\\ud800", "😀", "\u{0}", "{"].map { Array($0.utf8) }
        for index in 0..<2_000 {
            if index % 100 == 99 { await Task.yield() }  // see DecoderFuzzTests: do not hold a pool thread
            var bytes: [UInt8] = []
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let body = frames.randomElement(using: &random)!
                bytes += Array("\(body.utf16.count)#\(body)".utf8)
            }
            for _ in 0..<Int.random(in: 1...3, using: &random) {
                let at = Int.random(in: 0...bytes.count, using: &random)
                switch Int.random(in: 0..<3, using: &random) {
                case 0 where at < bytes.count: bytes[at] = UInt8.random(in: 0...255, using: &random)
                case 1 where at < bytes.count: bytes.remove(at: at)
                default: bytes.insert(contentsOf: pieces.randomElement(using: &random)!, at: at)
                }
            }
            let decoder = try Decoder(maxFrameLength: 4096)
            let split = Int.random(in: 0...bytes.count, using: &random)
            for chunk in [bytes[..<split], bytes[split...]] where decoder.isActive {
                try? decoder.feed(chunk)
            }
            while let frame = try? decoder.channel.readInbound(as: ByteBuffer.self) {
                _ = try? TCPWireFormat.nestJS.decode(frame)
            }
            decoder.finish()
        }
    }

    // MARK: Incomplete-frame timeout

    @Test func halfSentFrameIsClosedAfterTheTimeout() throws {
        let decoder = try Decoder(incompleteFrameTimeout: .milliseconds(200))
        defer { decoder.finish() }
        try decoder.feed(#"20#{"response":"#)
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(199))
        #expect(decoder.isActive)
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!decoder.isActive)
        let error = #expect(throws: FrameError.self) { try decoder.channel.throwIfErrorCaught() }
        #expect(error?.reason.contains("incomplete") == true)
    }

    @Test func halfSentLengthPrefixAlsoTimesOut() throws {
        let decoder = try Decoder(incompleteFrameTimeout: .milliseconds(200))
        defer { decoder.finish() }
        try decoder.feed("2")
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!decoder.isActive)
    }

    @Test func completedFramesLeaveNoTimerBehind() throws {
        let decoder = try Decoder(incompleteFrameTimeout: .milliseconds(200))
        defer { decoder.finish() }
        try decoder.feed(Self.responseVector)
        decoder.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(decoder.isActive)
        // A frame completed before the timeout cancels it.
        try decoder.feed(#"2#{"#)
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(150))
        try decoder.feed("}")
        decoder.channel.embeddedEventLoop.advanceTime(by: .seconds(5))
        #expect(decoder.isActive)
        #expect(try decoder.frames() == [#"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#, "{}"])
    }

    @Test func timeoutCountsFromTheStartOfTheCurrentFrame() throws {
        // A busy connection whose reads keep ending mid-frame is making progress: each frame gets its own time.
        let decoder = try Decoder(incompleteFrameTimeout: .milliseconds(200))
        defer { decoder.finish() }
        try decoder.feed("2#{}2#{")  // frame 1 complete, frame 2 begins at t = 0
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(150))
        try decoder.feed("}2#{")  // frame 2 completes, frame 3 begins at t = 150
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(150))
        #expect(decoder.isActive, "frame 3 has been incomplete for only 150 ms")
        try decoder.feed("}")
        #expect(try decoder.frames() == ["{}", "{}", "{}"])
        // But a frame that then stalls is still cut off.
        try decoder.feed("2#")
        decoder.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!decoder.isActive)
    }

    @Test func noTimeoutMeansWaitingForever() throws {
        let decoder = try Decoder(incompleteFrameTimeout: nil)
        defer { decoder.finish() }
        try decoder.feed("5#{")
        decoder.channel.embeddedEventLoop.advanceTime(by: .seconds(3600))
        #expect(decoder.isActive)
    }

    // MARK: UTF-16 length counting

    /// A deterministic generator, so a failure can be reproduced.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    static func randomScalar(using rng: inout SplitMix64) -> Unicode.Scalar {
        let ranges: [ClosedRange<UInt32>] = [
            0x00...0x7F,  // ASCII, 1 byte
            0x80...0x7FF,  // 2 bytes
            0x800...0xD7FF,  // 3 bytes, below the surrogates
            0xE000...0xFFFF,  // 3 bytes, above the surrogates
            0x1_0000...0x10_FFFF,  // 4 bytes, a surrogate pair in UTF-16
        ]
        let range = ranges[Int.random(in: 0..<ranges.count, using: &rng)]
        return Unicode.Scalar(UInt32.random(in: range, using: &rng))!
    }

    @Test func utf16LengthMatchesSwiftForRandomStrings() {
        var rng = SplitMix64(state: 0xC0FF_EE)
        for round in 0..<400 {
            var scalars = String.UnicodeScalarView()
            // Runs of ASCII (counted eight bytes at a time) before and between the random scalars.
            for _ in 0..<Int.random(in: 0...20, using: &rng) { scalars.append("a") }
            for _ in 0..<Int.random(in: 0...64, using: &rng) {
                scalars.append(Self.randomScalar(using: &rng))
                if Int.random(in: 0..<8, using: &rng) == 0 { scalars.append(contentsOf: "0123456789".unicodeScalars) }
            }
            let string = String(scalars)
            #expect(
                Array(string.utf8).withUnsafeBytes { NestFraming.utf16Length(of: $0) } == string.utf16.count,
                "round \(round): \(string.unicodeScalars.map { String($0.value, radix: 16) })"
            )
        }
    }

    @Test func randomStringsRoundTripThroughFramingAndDecoding() throws {
        var rng = SplitMix64(state: 42)
        var bodies: [String] = []
        var stream: [UInt8] = []
        for _ in 0..<200 {
            var scalars = String.UnicodeScalarView()
            for _ in 0..<Int.random(in: 0...24, using: &rng) {
                let scalar = Self.randomScalar(using: &rng)
                // Keep the JSON simple: no quotes, backslashes or control characters in the string.
                if scalar.value < 0x20 || scalar == "\"" || scalar == "\\" { continue }
                scalars.append(scalar)
            }
            let text = String(scalars)
            let body = #"{"response":""# + text + #"","id":"r"}"#
            let frame = NestFraming.frame(WireReply(correlationID: "r", response: ByteBuffer(string: "\"\(text)\"")))
            #expect(String(buffer: frame) == "\(body.utf16.count)#\(body)")
            bodies.append(body)
            stream += frame.readableBytesView
        }
        let decoder = try Decoder()
        defer { decoder.finish() }
        var frames: [String] = []
        var start = 0
        while start < stream.count {
            let end = min(stream.count, start + Int.random(in: 1...50, using: &rng))
            try decoder.feed(stream[start..<end])
            frames += try decoder.frames()
            start = end
        }
        #expect(frames == bodies)
    }
}
