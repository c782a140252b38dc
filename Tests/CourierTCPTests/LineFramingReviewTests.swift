//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import NIOEmbedded
import Testing

@testable import CourierTCP

/// Ascender's lines at the limit, with their line end split across reads.
@Suite struct LineFramingReviewTests {
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
