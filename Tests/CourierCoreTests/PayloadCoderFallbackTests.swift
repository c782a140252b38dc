//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation
import NIOCore
import Testing

@testable import CourierCore

// PayloadCoder uses the fast coders and hands Foundation whatever they leave to it; these tests check the seams.

private func foundationBytes<T: Encodable>(_ value: T) throws -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.withoutEscapingSlashes]
    return Array(try encoder.encode(value))
}

private struct Attachment: Codable, Equatable {
    var name: String
    var data: Data
    var link: URL
    var amount: Decimal
    var created: Date
}

private struct Order: Codable, Equatable {
    var id: Int
    var customer: String
    var total: Double
    var paid: Bool
    var note: String?
    var items: [Int]
}

private struct RepeatedKey: Encodable {
    enum Keys: String, CodingKey { case a }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(1, forKey: .a)
        try container.encode(2, forKey: .a)
    }
}

@Suite("PayloadCoder with the fast coders and Foundation fallback")
struct PayloadCoderFallbackTests {
    @Test func codableValuesUseTheFastCodersInDeclarationOrder() throws {
        let coder = PayloadCoder()
        let order = Order(id: 42, customer: "Ada / Lovelace", total: 99.95, paid: true, note: nil, items: [3, 1, 4])
        let buffer = try coder.encode(order)
        #expect(
            String(buffer: buffer)
                == #"{"id":42,"customer":"Ada / Lovelace","total":99.95,"paid":true,"items":[3,1,4]}"#
        )
        #expect(try coder.decode(Order.self, from: buffer) == order)
        #expect(String(buffer: try coder.encode([1, 2, 3])) == "[1,2,3]")
        #expect(try coder.decode([Int].self, from: ByteBuffer(string: " [1, 2, 3] ")) == [1, 2, 3])
    }

    @Test func foundationSpecialTypesAreEncodedAndDecodedByFoundation() throws {
        let coder = PayloadCoder()
        let value = Attachment(
            name: "report",
            data: Data([0, 1, 2, 250]),
            link: URL(string: "https://example.com/a/b?c=d")!,
            amount: Decimal(string: "12.50")!,
            created: Date(timeIntervalSinceReferenceDate: 1234.5)
        )
        let buffer = try coder.encode(value)
        let bytes = Array(buffer.readableBytesView)
        #expect(try JSONValue(parsing: bytes) == JSONValue(parsing: foundationBytes(value)))
        #expect(try JSONValue(parsing: bytes)["data"] == "AAEC+g==")
        #expect(try coder.decode(Attachment.self, from: buffer) == value)
        #expect(String(buffer: try coder.encode(Data([1, 2, 3]))) == #""AQID""#)
        #expect(
            try coder.decode(URL.self, from: ByteBuffer(string: #""https://x.org/""#)) == URL(string: "https://x.org/")
        )
    }

    @Test func encodingTheFastEncoderCannotStreamFallsBack() throws {
        #expect(try JSONValue(parsing: Array(PayloadCoder().encode(RepeatedKey()).readableBytesView)) == ["a": 2])
    }

    @Test func documentsOnlyFoundationAcceptsStillDecode() throws {
        let coder = PayloadCoder()
        #expect(try coder.decode([Int].self, from: ByteBuffer(string: "[1,2,]")) == [1, 2])
        #expect(try coder.decode([Int].self, from: ByteBuffer(bytes: [0xEF, 0xBB, 0xBF] + Array("[7]".utf8))) == [7])
    }

    @Test func malformedDocumentsReportWhereTheyBreak() throws {
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().decode([Int].self, from: ByteBuffer(string: "[1,x]"))
        }
        #expect(error?.code == .decodingFailed)
        let message = try #require(error?.message)
        #expect(message.contains("unexpected character 'x' at offset 3"), "\(message)")
    }

    @Test func foundationsLenientErrorsAreKept() throws {
        // Foundation checks string escapes only in values it decodes, so this is a type mismatch for it, not
        // malformed JSON; PayloadCoder reports what Foundation reports, as it did before the fast coders.
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().decode(Int.self, from: ByteBuffer(string: #""\x""#))
        }
        #expect(error?.underlying is DecodingError)
        let message = try #require(error?.message)
        #expect(message.contains("expected Int at top level"), "\(message)")
    }

    @Test func encodingErrorsAreStillEncodingFailed() {
        let error = #expect(throws: CourierError.self) {
            _ = try PayloadCoder().encode(["x": Double.infinity])
        }
        #expect(error?.code == .encodingFailed)
        #expect(error?.underlying is EncodingError)
    }
}
