//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// The `kafka_replyPartition` header, which NestJS and Spring encode differently.
///
/// NestJS writes the partition as decimal text (`"0"` is the single byte `0x30`); Spring writes a 4-byte
/// big-endian integer. A 4-byte value is read as Spring's integer when its first byte is `0x00` or any byte is not an
/// ASCII digit; otherwise it is decimal text. The only value both readings fit is four digit bytes, which as an
/// integer would be a partition above 808 million, so reading it as text (`"0007"` → 7) is always right in
/// practice.
public enum KafkaReplyPartition {
    /// Parses a header value.
    ///
    /// - Returns: The partition, or `nil` when the value is neither form (empty, a sign, spaces, a fraction, too
    ///   large for `Int32`, negative), in which case the reply goes wherever the producer's partitioner puts it.
    public static func parse(_ bytes: some Collection<UInt8>) -> Int32? {
        let bytes = Array(bytes)
        if bytes.count == 4 && (bytes[0] == 0 || bytes.contains(where: { !isDigit($0) })) {
            let value = bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            // Spring never sends a negative partition; a negative number here is garbage, not a partition.
            return value <= UInt32(Int32.max) ? Int32(value) : nil
        }
        guard !bytes.isEmpty, bytes.allSatisfy(isDigit) else { return nil }
        // Leading zeros are accepted ("0007"), so the length alone does not bound the value: accumulate and stop
        // at the first overflow.
        var value: Int32 = 0
        for byte in bytes {
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int32(byte - UInt8(ascii: "0")))
            if overflow1 || overflow2 { return nil }
            value = sum
        }
        return value
    }

    /// The header value Courier sends: decimal text, which NestJS reads with `parseFloat`.
    ///
    /// Spring servers cannot read it (they expect 4 bytes), and then let their partitioner choose; clients that call
    /// Spring workers send ``encodeBigEndian(_:)`` instead (``KafkaRequestHeaderFormat/spring``).
    public static func encode(_ partition: Int32) -> [UInt8] {
        Array(String(partition).utf8)
    }

    /// Spring's form: the partition as a 4-byte big-endian integer.
    public static func encodeBigEndian(_ partition: Int32) -> [UInt8] {
        let value = UInt32(bitPattern: partition)
        return [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    private static func isDigit(_ byte: UInt8) -> Bool {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
    }
}
