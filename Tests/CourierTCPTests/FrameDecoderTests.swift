//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
@testable import CourierTCP
import CourierTestSupport
import NIOCore
import NIOEmbedded
import Testing

/// The frame decoder under peers that send a large frame in many small reads.
@Suite(.cpuBound) struct FrameDecoderTests {
    /// A frame arriving in many reads is gathered in time proportional to its size: the cumulation is appended to
    /// in place, not copied whole on every read (which made an 8 MiB frame in 1 KiB reads copy about 34 GB on the
    /// event loop, stalling every connection on it). 16 MiB in 1 KiB reads: well under a second in place, over 20 s
    /// copied, so the bound tells them apart with room for a loaded machine.
    @Test func aLargeFrameInManySmallReadsIsGatheredInLinearTime() throws {
        let body = #"{"response":""# + String(repeating: "a", count: 16 << 20) + #"","id":"big"}"#
        let bytes = Array("\(body.utf16.count)#\(body)".utf8)
        let decoder = try NestFramingTests.Decoder(maxFrameLength: 32 << 20)
        defer { decoder.finish() }
        let clock = ContinuousClock()
        let start = clock.now
        var offset = 0
        while offset < bytes.count {
            let end = min(bytes.count, offset + 1_024)
            try decoder.feed(bytes[offset..<end])
            offset = end
        }
        let elapsed = clock.now - start
        let frames = try decoder.frames()
        #expect(frames.count == 1 && frames.first?.utf8.count == body.utf8.count)
        #expect(elapsed < .seconds(5), "gathering a 16 MiB frame from 1 KiB reads took \(elapsed)")
    }
}
