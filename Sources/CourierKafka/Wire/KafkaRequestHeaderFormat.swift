//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// How a Kafka client encodes the correlation id and reply partition of its requests.
///
/// Courier workers read both forms (they echo the correlation bytes verbatim and parse the partition either way),
/// so the choice matters only for foreign workers:
///
/// | format | `kafka_correlationId` | `kafka_replyPartition` | workers that read it |
/// |---|---|---|---|
/// | ``nestJS`` | the UUID as UTF-8 text (36 bytes) | decimal text (`"3"`) | NestJS, Courier |
/// | ``spring`` | the UUID as 16 raw bytes | 4-byte big-endian integer | Spring `@KafkaListener` + `@SendTo`, Courier |
///
/// A Spring listener cannot read NestJS's decimal partition and lets its partitioner choose the reply partition, so
/// a client that calls Spring workers needs ``spring``; a NestJS worker cannot read Spring's 4-byte partition.
public struct KafkaRequestHeaderFormat: Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Sendable, Hashable { case nestJS, spring }
    private let kind: Kind

    /// NestJS's headers (the default).
    public static let nestJS = KafkaRequestHeaderFormat(kind: .nestJS)
    /// Spring Kafka `ReplyingKafkaTemplate`'s defaults: binary correlation and a binary reply partition.
    public static let spring = KafkaRequestHeaderFormat(kind: .spring)

    /// Reads `nestjs` or `spring` (case-insensitive), as in the `headers=` option of a `kafka://` URL.
    public init?(name: String) {
        switch name.lowercased() {
        case "nestjs", "nest": self = .nestJS
        case "spring": self = .spring
        default: return nil
        }
    }

    private init(kind: Kind) { self.kind = kind }

    public var description: String { kind == .nestJS ? "nestjs" : "spring" }

    /// The correlation header bytes for a correlation id.
    func correlationBytes(for id: String) -> [UInt8] {
        guard kind == .spring, let bytes = Self.uuidBytes(id) else { return Array(id.utf8) }
        return bytes
    }

    /// The correlation id for a reply's correlation header bytes.
    func correlationID(from bytes: [UInt8]) -> String {
        if kind == .spring, bytes.count == 16 { return Self.uuidText(bytes) }
        return KafkaRecordCodec.correlationID(from: bytes)
    }

    /// The reply partition header bytes.
    func replyPartitionBytes(_ partition: Int32) -> [UInt8] {
        kind == .spring ? KafkaReplyPartition.encodeBigEndian(partition) : KafkaReplyPartition.encode(partition)
    }

    /// The 16 bytes of a UUID written as 36 characters of hex and dashes, or nil for any other text.
    static func uuidBytes(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count == 36 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        var high: UInt8?
        for (index, character) in utf8.enumerated() {
            if index == 8 || index == 13 || index == 18 || index == 23 {
                guard character == UInt8(ascii: "-") else { return nil }
                continue
            }
            guard let nibble = hexValue(character) else { return nil }
            if let first = high {
                bytes.append(first << 4 | nibble)
                high = nil
            } else {
                high = nibble
            }
        }
        return bytes
    }

    /// Lowercase UUID text for 16 bytes.
    static func uuidText(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    private static func hexValue(_ character: UInt8) -> UInt8? {
        switch character {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): character - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): character - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): character - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
