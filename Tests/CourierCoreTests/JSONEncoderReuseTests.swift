//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Testing

@testable import CourierCore

/// The encoder reuses one state per thread from call to call: what one call leaves behind must not reach the next.
/// The tests are synchronous, so their calls run on one thread and share its spare state.
@Suite struct JSONEncoderReuseTests {
    struct Order: Encodable, Equatable {
        var id: String
        var lines: [Int]
        var note: String?
    }

    /// Keeps the encoder it is given, which the `Encoder` contract does not allow.
    final class KeptEncoder: @unchecked Sendable {
        var encoder: (any Encoder)?
    }

    struct Keeper: Encodable {
        let kept: KeptEncoder
        func encode(to encoder: any Encoder) throws {
            kept.encoder = encoder
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(1, forKey: .kept)
        }
    }

    enum Key: String, CodingKey { case kept, stale, id }

    /// Writes through an encoder kept from an earlier call before writing its own member.
    struct StaleWriter: Encodable {
        let kept: KeptEncoder
        func encode(to encoder: any Encoder) throws {
            if let stale = kept.encoder {
                var old = stale.container(keyedBy: Key.self)
                try? old.encode("stale", forKey: .stale)
            }
            var container = encoder.container(keyedBy: Key.self)
            try container.encode("fresh", forKey: .id)
        }
    }

    /// Encodes another value with Courier's encoder from inside its own `encode(to:)`.
    struct Nesting: Encodable {
        let inner: Order
        func encode(to encoder: any Encoder) throws {
            let innerJSON = String(decoding: try CourierJSONEncoder().encode(inner), as: UTF8.self)
            var container = encoder.singleValueContainer()
            try container.encode(innerJSON)
        }
    }

    static func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func consecutiveCallsOfEverySizeGiveTheirOwnOutput() throws {
        let encoder = CourierJSONEncoder()
        let large = Order(id: String(repeating: "x", count: 100_000), lines: Array(0..<1_000), note: nil)
        let small = Order(id: "a", lines: [1], note: "n")
        #expect(Self.text(try encoder.encode(small)) == #"{"id":"a","lines":[1],"note":"n"}"#)
        #expect(try encoder.encode(large).count > 100_000)
        #expect(Self.text(try encoder.encode(small)) == #"{"id":"a","lines":[1],"note":"n"}"#)
        #expect(Self.text(try encoder.encode([1, 2, 3])) == "[1,2,3]")
        // A call that fails leaves nothing behind for the next.
        #expect(throws: (any Error).self) { try encoder.encode(Double.nan) }
        #expect(Self.text(try encoder.encode(small)) == #"{"id":"a","lines":[1],"note":"n"}"#)
        let buffer = try encoder.encodeToBuffer(small)
        #expect(String(buffer: buffer) == #"{"id":"a","lines":[1],"note":"n"}"#)
    }

    @Test func anEncoderKeptFromAnEarlierCallNeitherWritesToNorFailsALaterOne() throws {
        let encoder = CourierJSONEncoder()
        let kept = KeptEncoder()
        #expect(Self.text(try encoder.encode(Keeper(kept: kept))) == #"{"kept":1}"#)
        #expect(Self.text(try encoder.encode(StaleWriter(kept: kept))) == #"{"id":"fresh"}"#)
    }

    @Test func aValueCanUseTheEncoderWhileItIsBeingEncoded() throws {
        let encoder = CourierJSONEncoder()
        let nesting = [Nesting(inner: Order(id: "in", lines: [2], note: nil))]
        #expect(Self.text(try encoder.encode(nesting)) == #"["{\"id\":\"in\",\"lines\":[2]}"]"#)
        #expect(Self.text(try encoder.encode(Order(id: "b", lines: [], note: nil))) == #"{"id":"b","lines":[]}"#)
    }
}
