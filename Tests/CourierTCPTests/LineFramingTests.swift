//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import NIOEmbedded
import Testing

@testable import CourierTCP

/// Ascender's JSON lines (``TCPWireFormat/ascender``).
@Suite struct LineFramingTests {
    /// An `EmbeddedChannel` with a line decoder, active as a connected socket would be.
    struct Decoder {
        let channel: EmbeddedChannel

        init(maxLineLength: Int = 1 << 20, incompleteFrameTimeout: TimeAmount? = nil) throws {
            channel = EmbeddedChannel(
                handler: FrameDecoder(parser: LineFrameParser(maxLineLength: maxLineLength),
                                      incompleteFrameTimeout: incompleteFrameTimeout)
            )
            channel.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1), promise: nil)
            channel.embeddedEventLoop.run()
        }

        func feed(_ text: String) throws {
            try channel.writeInbound(ByteBuffer(string: text))
        }

        func frames() throws -> [String] {
            var frames: [String] = []
            while let body = try channel.readInbound(as: ByteBuffer.self) { frames.append(String(buffer: body)) }
            return frames
        }
    }

    @Test func cutsLinesAcrossReadsAndDropsCarriageReturnsAndEmptyLines() throws {
        let decoder = try Decoder()
        try decoder.feed(#"{"pattern": "sum", "correlationId": "c0"#)
        #expect(try decoder.frames().isEmpty)
        try decoder.feed("ffee\", \"payload\": \"[1, 2, 3]\"}\n\n{\"a\":1}\r\n{\"b\"")
        #expect(try decoder.frames() == [#"{"pattern": "sum", "correlationId": "c0ffee", "payload": "[1, 2, 3]"}"#, #"{"a":1}"#])
        try decoder.feed(":2}\n")
        #expect(try decoder.frames() == [#"{"b":2}"#])
        #expect(decoder.channel.isActive)
    }

    @Test func aLineOverTheLimitClosesTheConnectionEvenBeforeItEnds() throws {
        let decoder = try Decoder(maxLineLength: 16)
        try decoder.feed(String(repeating: "x", count: 10) + "\n")
        #expect(try decoder.frames().count == 1)
        #expect(throws: FrameError.self) { try decoder.feed(String(repeating: "y", count: 17)) }
        #expect(!decoder.channel.isActive)
    }

    @Test func aHalfSentLineTimesOut() throws {
        let decoder = try Decoder(incompleteFrameTimeout: .seconds(5))
        try decoder.feed(#"{"pattern": "sum""#)
        decoder.channel.embeddedEventLoop.advanceTime(by: .seconds(6))
        #expect(!decoder.channel.isActive)
    }

    @Test func theURLOptionChoosesTheFormat() throws {
        #expect(try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:8888?format=ascender")).format == .ascender)
        #expect(try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:3000")).format == .nestJS)
        #expect(throws: CourierError.self) { try TCPConfiguration(url: TransportURL("tcp://h:1?format=grpc")) }
        // A misspelt option is an error, not silently nothing.
        let misspelt = #expect(throws: CourierError.self) {
            try TCPConfiguration(url: TransportURL("tcp://h:1?maxFrameLen=5"))
        }
        #expect(misspelt?.message == "unknown TCP URL option 'maxFrameLen'")
    }

    @Test func timeoutsTooLongForNIOSaturateInsteadOfWrapping() throws {
        // 10^13 ms wrapped to a negative TimeAmount, which made every frame split across two reads time out at once.
        let configuration = try TCPConfiguration(url: TransportURL("tcp://h:1?incompleteFrameTimeoutMs=10000000000000"))
        #expect(configuration.incompleteFrameTimeout?.timeAmount == .nanoseconds(.max))
        let stalled = try TCPConfiguration(url: TransportURL("tcp://h:1?stalledWriteTimeoutMs=1500"))
        #expect(stalled.stalledWriteTimeout == .milliseconds(1500))
        #expect(try TCPConfiguration(url: TransportURL("tcp://h:1?stalledWriteTimeoutMs=0")).stalledWriteTimeout == nil)
        #expect(try TCPConfiguration(url: TransportURL("tcp://h:1")).stalledWriteTimeout == .seconds(30))
        #expect(throws: CourierError.self) { try TCPConfiguration(url: TransportURL("tcp://h:1?stalledWriteTimeoutMs=-1")) }
        #expect(Duration.milliseconds(1500).timeAmount == .milliseconds(1500))
    }

    @Test func framesEndInANewlineAndCountTheirLimitInBytes() {
        let request = WireRequest(pattern: "sum", payload: ByteBuffer(string: "[1]"), correlationID: "c0ffee")
        let frame = TCPWireFormat.ascender.frame(request)
        #expect(String(buffer: frame) == #"{"pattern":"sum","correlationId":"c0ffee","payload":"[1]"}"# + "\n")
        #expect(!TCPWireFormat.ascender.exceeds(frame, maxFrameLength: frame.readableBytes - 1))
        #expect(TCPWireFormat.ascender.exceeds(frame, maxFrameLength: frame.readableBytes - 2))
        #expect(TCPWireFormat(name: "Ascender") == .ascender)
        #expect(TCPWireFormat(name: "grpc") == nil)
    }

    /// Ascender's lines at the limit, with their line end split across reads.
    @Test func aLineAtTheLimitEndedByCRLFIsAcceptedWhenTheLineFeedComesInALaterRead() throws {
        let decoder = try LineFramingTests.Decoder(maxLineLength: 16)
        let line = String(repeating: "x", count: 16)
        // The limit counts the line without its line end, so this line is within it whichever read brings "\n".
        try decoder.feed(line + "\r")
        try decoder.feed("\n")
        #expect(try decoder.frames() == [line])
        #expect(decoder.channel.isActive)
        // One byte more is still refused.
        #expect(throws: FrameError.self) { try decoder.feed(String(repeating: "y", count: 17) + "\r\n") }
    }
}
