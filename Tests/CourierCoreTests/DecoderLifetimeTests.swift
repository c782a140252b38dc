//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Testing

@testable import CourierCore

/// A `Decodable` may keep the decoder it is given and read from it after `decode` returned (lazy decoding does).
/// Foundation's decoder keeps its own copy of the input for that; Courier's reads the payload's bytes in place, so
/// it must keep them alive as long as a decoder or container that reads them.
@Suite struct DecoderLifetimeTests {
    /// Keeps its decoder and decodes its value only when asked.
    struct Lazy: Decodable {
        let decoder: any Decoder
        init(from decoder: any Decoder) throws { self.decoder = decoder }
        func value() throws -> [String: Int] { try decoder.singleValueContainer().decode([String: Int].self) }
    }

    /// Keeps its keyed container.
    struct LazyKeyed: Decodable {
        enum Key: String, CodingKey { case total, lines }
        let container: KeyedDecodingContainer<Key>
        init(from decoder: any Decoder) throws { container = try decoder.container(keyedBy: Key.self) }
    }

    static func payload(_ text: String) -> ByteBuffer {
        // A buffer of its own (not a slice of a larger one), freed once the last copy of it goes.
        var buffer = ByteBufferAllocator().buffer(capacity: text.utf8.count)
        buffer.writeString(text)
        return buffer
    }

    @Test func aKeptDecoderReadsTheBytesItWasGiven() throws {
        var kept: [Lazy] = []
        for index in 0..<200 {
            kept.append(try PayloadCoder().decode(Lazy.self, from: Self.payload(#"{"index":\#(index),"pad":1234567}"#)))
        }
        // Each payload buffer is gone now but for what the decoders keep; allocating more buffers of the same size
        // reuses freed memory, so a decoder reading freed memory would see these bytes instead of its own.
        let overwrite = (0..<200).map { _ in Self.payload(#"{"index":-999999,"pad":7654321}"#) }
        for (index, lazy) in kept.enumerated() {
            #expect(try lazy.value() == ["index": index, "pad": 1_234_567])
        }
        withExtendedLifetime(overwrite) {}
    }

    @Test func aKeptContainerReadsTheBytesItWasGiven() throws {
        var kept: [LazyKeyed] = []
        for index in 0..<200 {
            kept.append(try PayloadCoder().decode(LazyKeyed.self, from: Self.payload(#"{"total":\#(index),"lines":[1,2,3]}"#)))
        }
        let overwrite = (0..<200).map { _ in Self.payload(#"{"total":-99999,"lines":[7,7,7]}"#) }
        for (index, lazy) in kept.enumerated() {
            #expect(try lazy.container.decode(Int.self, forKey: .total) == index)
            #expect(try lazy.container.decode([Int].self, forKey: .lines) == [1, 2, 3])
        }
        withExtendedLifetime(overwrite) {}
    }
}
