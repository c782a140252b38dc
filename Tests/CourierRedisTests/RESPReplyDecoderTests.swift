//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierTestSupport
import CourierTesting
import NIOCore
import NIOEmbedded
import Testing

@testable import CourierRedis

@Suite(.cpuBound) struct RESPReplyDecoderTests {
    private func decode(_ chunks: [[UInt8]]) throws -> [RESPValue] {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPReplyDecoder()))
        var values: [RESPValue] = []
        for chunk in chunks {
            try channel.writeInbound(ByteBuffer(bytes: chunk))
            while let value = try channel.readInbound(as: RESPValue.self) { values.append(value) }
        }
        _ = try? channel.finish()
        return values
    }

    private func decode(_ text: String) throws -> [RESPValue] {
        try decode([Array(text.utf8)])
    }

    @Test func decodesEveryRESP2Type() throws {
        let values = try decode("+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n")
        #expect(
            values == [
                .simpleString("OK"), .error("ERR bad thing"), .integer(-42), .bulkString(ByteBuffer(string: "hello")),
                .bulkString(ByteBuffer()), .bulkString(nil), .array(nil), .array([]),
            ]
        )
    }

    @Test func bulkStringsAreBinarySafe() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 36, 42, 0]
        let values = try decode([Array("$7\r\n".utf8) + payload + Array("\r\n".utf8)])
        #expect(values.map(\.bytes) == [payload])
    }

    @Test func nestedArraysKeepTheirShape() throws {
        let values = try decode("*3\r\n*2\r\n:1\r\n$1\r\nx\r\n*0\r\n*1\r\n*1\r\n$-1\r\n")
        #expect(
            values == [
                .array([
                    .array([.integer(1), .bulkString(ByteBuffer(string: "x"))]),
                    .array([]),
                    .array([.array([.bulkString(nil)])]),
                ])
            ]
        )
    }

    @Test func repliesSplitAtEveryByteAreReassembled() throws {
        let wire = Array("*2\r\n$3\r\nfoo\r\n:7\r\n+PONG\r\n".utf8)
        let values = try decode(wire.map { [$0] })
        #expect(values == [.array([.bulkString(ByteBuffer(string: "foo")), .integer(7)]), .simpleString("PONG")])
    }

    @Test func manyRepliesInOneReadComeOutInOrder() throws {
        let wire = (0..<1000).map { ":\($0)\r\n" }.joined()
        #expect(try decode(wire) == (0..<1000).map { .integer($0) })
    }

    @Test(arguments: [
        ("?garbage\r\n", "Protocol error, got \"?\" as reply type byte"),
        (":12x\r\n", "Bad integer value"),
        ("*abc\r\n", "Bad multi-bulk length"),
        ("$-5\r\n", "Bulk string length out of range"),
    ])
    func malformedInputThrowsAClearError(_ garbage: String, _ reason: String) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPReplyDecoder()))
        let error = #expect(throws: CourierError.self) {
            try channel.writeInbound(ByteBuffer(string: garbage))
        }
        #expect(error?.code == .decodingFailed)
        #expect(error?.message == "malformed reply from Redis: \(reason)")
        _ = try? channel.finish()
    }

    @Test func nestingDeeperThanHiredisSupportsIsAProtocolError() {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(RESPReplyDecoder()))
        let error = #expect(throws: CourierError.self) {
            try channel.writeInbound(ByteBuffer(string: String(repeating: "*1\r\n", count: 9) + ":1\r\n"))
        }
        #expect(error?.message.contains("nested multi bulk") == true, "\(String(describing: error))")
        _ = try? channel.finish()
    }

    @Test func encoderWritesBinarySafeRESPArrays() throws {
        let payload: [UInt8] = [0, 13, 10, 255]
        let encoded = try RESPCommandEncoder.encode(
            ["SET", "k", RESPArgument(bytes: payload), 10, ""],
            allocator: ByteBufferAllocator()
        )
        let expected = Array("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n".utf8) + payload
            + Array("\r\n$2\r\n10\r\n$0\r\n\r\n".utf8)
        #expect(Array(encoded.readableBytesView) == expected)
    }

    @Test func encoderWritesLongArgumentsWithTheirFullLength() throws {
        let payload = [UInt8](repeating: UInt8(ascii: "x"), count: 1_234_567)
        let encoded = try RESPCommandEncoder.encode(
            ["PUBLISH", "c", RESPArgument(bytes: payload)],
            allocator: ByteBufferAllocator()
        )
        let head = Array("*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$1234567\r\n".utf8)
        #expect(Array(encoded.readableBytesView.prefix(head.count)) == head)
        #expect(encoded.readableBytes == head.count + payload.count + 2)
        #expect(Array(encoded.readableBytesView.suffix(3)) == [UInt8(ascii: "x"), 13, 10])
    }

    /// Replies from the network never crash the decoder: mutated RESP (seeded, so a failure repeats), split at
    /// random points, may only decode or throw.
    @Test func mutatedRepliesNeverCrashTheDecoder() async {
        var random = SeededRandom(state: 0x5EED_0F_2E5)
        let seeds = [
            "+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhello\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n",
            "*3\r\n$7\r\nmessage\r\n$3\r\nabc\r\n$2\r\n{}\r\n*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nx\r\n$0\r\n\r\n",
            "*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n$3\r\nabc\r\n",
        ].map { Array($0.utf8) }
        let pieces = ["\r\n", "$", "*", ":", "-", "+", "$-1", "*-1", "$99999999999", "*99999999999", ":9223372036854775808",
                      String(repeating: "*1\r\n", count: 40)].map { Array($0.utf8) }
        for index in 0..<3_000 {
            if index % 100 == 99 { await Task.yield() }  // see DecoderFuzzTests: do not hold a pool thread
            var bytes = seeds.randomElement(using: &random)!
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let at = Int.random(in: 0...bytes.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0 where at < bytes.count: bytes[at] = UInt8.random(in: 0...255, using: &random)
                case 1 where at < bytes.count: bytes.remove(at: at)
                case 2: bytes = Array(bytes.prefix(at))
                default: bytes.insert(contentsOf: pieces.randomElement(using: &random)!, at: at)
                }
            }
            let split = Int.random(in: 0...bytes.count, using: &random)
            _ = try? decode([Array(bytes[..<split]), Array(bytes[split...])])
        }
    }
}
