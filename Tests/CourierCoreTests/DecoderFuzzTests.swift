//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierTestSupport
import Foundation
import NIOCore
import Testing

@testable import CourierCore

/// Input from the network must never crash a worker: the envelope, JSON and typed payload decoders get mutated
/// packets (seeded, so a failure repeats) and may only return or throw. 5,000 inputs by default;
/// `COURIER_FUZZ_COUNT=300000` ran clean on 2026-11-23 (it found nothing the review had not).
@Suite(.cpuBound) struct DecoderFuzzTests {
    /// The JSON consistency tests' generator: seeded, so every run feeds the same inputs.
    typealias Seeded = JSONConsistencyTests.SplitMix

    static let seeds: [String] = [
        #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#,
        #"{"pattern":{"cmd":"sum","n":1e20},"data":{"a":[1,{"b":null}]},"id":"x","metadata":{"courier-timeout-ms":"1500","h":"v"}}"#,
        #"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#,
        #"{"err":{"status":"error","message":"boom","code":422,"details":[1]},"id":"e","isDisposed":true}"#,
        #"{"courier-extend-ms":1500,"id":"x"}"#,
        #"{"correlationId":"response-s1","pattern":"_rpc:response","payload":"3","isDisposed":false}"#,
        #"{"correlationId":"defer-s1","pattern":"_rpc:response","payload":"defer","courier-extend-ms":15}"#,
        #"{"pattern":"sum","payload":{"a":1},"correlationId":"c1","courier-timeout-ms":100}"#,
        #"{"s":"\u00e9\ud83d\ude00\\\"","n":-0.5e-3,"t":true,"f":false,"z":null,"big":123456789012345678901234567890}"#,
    ]

    /// Bytes that make parsers take their edge paths.
    static let interesting: [[UInt8]] = [
        Array("\"".utf8), Array("\\".utf8), Array("{".utf8), Array("}".utf8), Array("[".utf8), Array("]".utf8),
        Array(":".utf8), Array(",".utf8), Array("1e400".utf8), Array("-1e400".utf8), Array("1e20".utf8),
        Array("9223372036854775808".utf8), Array("-9223372036854775809".utf8), Array("\\u".utf8),
        Array("\\ud800".utf8), Array("\\udc00".utf8), [0xFF], [0xC3], [0xF0, 0x9F], [0x00], Array("null".utf8),
        Array("\"courier-extend-ms\":".utf8), Array("\"courier-timeout-ms\":".utf8), Array("\"pattern\":".utf8),
        Array(String(repeating: "[", count: 600).utf8),
    ]

    static func mutate(_ input: [UInt8], with random: inout Seeded) -> [UInt8] {
        var bytes = input
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let at = bytes.isEmpty ? 0 : Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0 where !bytes.isEmpty: bytes[at] = UInt8.random(in: 0...255, using: &random)
            case 1 where !bytes.isEmpty: bytes.remove(at: at)
            case 2: bytes.insert(contentsOf: interesting.randomElement(using: &random)!, at: at)
            case 3: bytes = Array(bytes.prefix(at))
            case 4 where !bytes.isEmpty: bytes.insert(bytes[at], at: at)
            default: bytes.append(contentsOf: interesting.randomElement(using: &random)!)
            }
        }
        return bytes
    }

    /// Every packet the general decoder would give, as text: what the compact path must reproduce.
    static func describe(_ packet: WirePacket) -> String {
        switch packet {
        case .request(let request):
            return "request \(request.pattern.debugDescription) \(String(buffer: request.payload).debugDescription) "
                + "\(String(describing: request.correlationID)) \(request.headers.sorted { $0.key < $1.key }) "
                + "\(String(describing: request.timeout))"
        case .reply(let reply):
            return "reply \(reply.correlationID.debugDescription) "
                + "\(String(describing: reply.response.map { String(buffer: $0) })) \(String(describing: reply.error)) "
                + "\(reply.isDisposed) \(String(describing: reply.status)) \(String(describing: reply.extendDeadline))"
        }
    }

    /// The decoder's compact path (Courier's and NestJS's own envelope shapes) and its general path agree on every
    /// input: the same packet, or both an error. Seeds in the compact shapes, then mutations of them.
    @Test func theCompactEnvelopePathDecodesAsTheGeneralOneDoes() throws {
        let compact: [String] = [
            #"{"pattern":"math.sum","data":[1,2,3],"metadata":{"courier-timeout-ms":"30000"},"id":"1b4e28ba-2fa1-41d2-883f-0016d3cca427"}"#,
            #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#,
            #"{"pattern":"load.tick","data":{"a":[1,{"b":null}],"s":"\u00e9\""}}"#,
            #"{"pattern":"","data":null}"#,
            #"{"pattern":"{\"cmd\":\"sum\"}","data":1,"id":"x"}"#,
            #"{"pattern":"{not json","data":1,"id":"x"}"#,
            #"{"pattern":"p","data":1,"metadata":{"courier-timeout-ms":"999999999999999999"},"id":"x"}"#,
            #"{"pattern":"p","data":1,"metadata":{"courier-timeout-ms":"9999999999999999999"},"id":"x"}"#,
            #"{"pattern":"p","data":1,"metadata":{"courier-timeout-ms":"12a"},"id":"x"}"#,
            #"{"pattern":"p","data":1,"metadata":{"courier-timeout-ms":"10","tenant":"acme"},"id":"x"}"#,
            #"{"pattern":"p","data":1,"metadata":{"a":"1","courier-timeout-ms":"10"},"id":"x"}"#,
            #"{"pattern":"p","data":1,"id":"x","id":"y"}"#,
            #"{"pattern":"p","data":1,"pattern":"q"}"#,
            #"{"pattern":"caf\u00e9","data":1,"id":"é"}"#,
            #"{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#,
            #"{"err":null,"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#,
            #"{"err":null,"response":{"a":1},"id":"x"}"#,
            #"{"err":false,"response":1,"id":"x"}"#,
            #"{"err":null,"response":1,"err":"late","id":"x"}"#,
            #"{"response":"a\nb","id":"x"}"#,
            #"{"response":null,"isDisposed":true,"id":"x"}"#,
            #"{"response":[],"isDisposed":false,"id":"x"}"#,
            #"{"response":1,"courier-extend-ms":5,"id":"x"}"#,
            #"{"response":1,"err":"no","isDisposed":true,"id":"x"}"#,
            #"{"response":1,"isDisposed":true,"id":7}"#,
            #"{"response":1,"isDisposed":true,"id":"x"} "#,
            #" {"response":1,"isDisposed":true,"id":"x"}"#,
            #"{"response":1,"isDisposed":true,"id":"x"}}"#,
            #"{"response": 1,"id":"x"}"#,
            "{\"response\":1,\"id\":\"a\u{7F}b\"}",
            "{\"response\":1,\"id\":\"a\u{1}b\"}",
            #"{"pattern":"p","data":"# + String(repeating: "[", count: 511) + String(repeating: "]", count: 511) + "}",
            #"{"pattern":"p","data":"# + String(repeating: "[", count: 512) + String(repeating: "]", count: 512) + "}",
        ]
        var random = Seeded(state: 0x0C0A_7AC7)
        var inputs = compact.map { Array($0.utf8) }
        let count = Int(ProcessInfo.processInfo.environment["COURIER_FUZZ_COUNT"] ?? "") ?? 5_000
        for _ in 0..<count {
            inputs.append(Self.mutate(Array(compact.randomElement(using: &random)!.utf8), with: &random))
        }
        var compactAccepted = 0
        for input in inputs {
            let buffer = ByteBuffer(bytes: input)
            let viaDecode = Result { try NestJSEnvelope.decode(buffer) }
            let viaGeneral = Result { try NestJSEnvelope.decodeGenerally(buffer) }
            switch (viaDecode, viaGeneral) {
            case (.success(let packet), .success(let expected)):
                #expect(Self.describe(packet) == Self.describe(expected), "\(String(decoding: input, as: UTF8.self))")
                compactAccepted += 1
            case (.failure, .failure):
                break
            default:
                Issue.record("decode and the general path disagree on \(String(decoding: input, as: UTF8.self)): \(viaDecode) / \(viaGeneral)")
            }
        }
        #expect(compactAccepted > inputs.count / 20, "the mutations should leave many decodable envelopes")
    }

    struct Typed: Decodable {
        var a: Int?
        var b: [String: Double]?
        var c: [Int8]?
        var d: UInt?
        var e: Date?
    }

    /// Every decoder the network reaches, on one input; only returning or throwing is allowed.
    static func decodeEverything(_ bytes: [UInt8]) {
        let buffer = ByteBuffer(bytes: bytes)
        _ = try? NestJSEnvelope.decode(buffer)
        _ = try? AscenderEnvelope.decode(buffer, channel: "sum")
        _ = try? AscenderEnvelope.decode(buffer)
        if let value = try? JSONValue(parsing: bytes) {
            _ = NestPatternNormalizer.routeString(for: value)
            _ = WireReply.callerError(from: value)
            _ = value.description
        }
        let coder = PayloadCoder()
        _ = try? coder.decode([Int].self, from: buffer)
        _ = try? coder.decode(Int.self, from: buffer)
        _ = try? coder.decode(Int8.self, from: buffer)
        _ = try? coder.decode(UInt64.self, from: buffer)
        _ = try? coder.decode(Double.self, from: buffer)
        _ = try? coder.decode(String.self, from: buffer)
        _ = try? coder.decode([String: Typed].self, from: buffer)
        _ = try? coder.decode(Typed.self, from: buffer)
        _ = try? coder.decode(JSONValue.self, from: buffer)
    }

    @Test func mutatedPacketsNeverCrashTheDecoders() async {
        var random = Seeded(state: 0xC0FF_EE00_D15E_A5E5)
        let count = Int(ProcessInfo.processInfo.environment["COURIER_FUZZ_COUNT"] ?? "") ?? 5_000
        for seed in Self.seeds { Self.decodeEverything(Array(seed.utf8)) }
        for index in 0..<count {
            let seed = Array(Self.seeds.randomElement(using: &random)!.utf8)
            Self.decodeEverything(Self.mutate(seed, with: &random))
            // About 3 s of CPU in a debug build, and the other fuzz tests run at the same time: each gives its
            // cooperative thread back now and then. Run without yielding, the four held both of CI's pool threads
            // for 7 s, and a test beside them timed out waiting 5 s for a task to run.
            if index % 100 == 99 { await Task.yield() }
        }
    }
}
