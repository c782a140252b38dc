//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka

/// One message's bytes laid out for `rd_kafka_produceva`.
///
/// `rd_kafka_producev` is variadic and cannot be called from Swift, so messages go through `rd_kafka_produceva`
/// and an array of `rd_kafka_vu_t`. Every string and byte array is copied into one contiguous buffer first, so a
/// single `withUnsafeBytes` keeps every pointer valid for the call (librdkafka copies them with
/// `RD_KAFKA_MSG_F_COPY`, so they need to live no longer).
struct ProduceArguments {
    private var storage: [UInt8] = []
    private let topicOffset: Int
    private let key: Range<Int>?
    private let value: Range<Int>?
    private var headers: [(name: Int, value: Range<Int>)] = []

    init(topic: String, key: [UInt8]?, value: [UInt8]?, headers: [(String, [UInt8])]) {
        var storage: [UInt8] = []
        storage.reserveCapacity(
            topic.utf8.count + 1 + (key?.count ?? 0) + (value?.count ?? 0)
                + headers.reduce(0) { $0 + $1.0.utf8.count + 1 + $1.1.count }
        )
        func append(cString string: String) -> Int {
            let offset = storage.count
            storage.append(contentsOf: string.utf8)
            storage.append(0)
            return offset
        }
        func append(bytes: [UInt8]) -> Range<Int> {
            let start = storage.count
            storage.append(contentsOf: bytes)
            return start..<storage.count
        }
        topicOffset = append(cString: topic)
        self.key = key.map { append(bytes: $0) }
        self.value = value.map { append(bytes: $0) }
        self.headers = headers.map { (name: append(cString: $0.0), value: append(bytes: $0.1)) }
        self.storage = storage
    }

    /// Calls `body` with the `rd_kafka_vu_t` list for this message; the pointers are valid only inside `body`.
    ///
    /// - Parameters:
    ///   - partition: An explicit partition, or nil for the partitioner's choice.
    ///   - id: The per-message opaque that comes back in the delivery report's `_private`.
    func withValues<T>(partition: Int32?, id: UInt64, _ body: (UnsafeBufferPointer<rd_kafka_vu_t>) -> T) -> T {
        storage.withUnsafeBytes { raw in
            // Never empty: the topic's terminating NUL is always there.
            let base = raw.baseAddress!
            func pointer(_ offset: Int) -> UnsafeMutableRawPointer { UnsafeMutableRawPointer(mutating: base + offset) }
            var values: [rd_kafka_vu_t] = []
            values.reserveCapacity(6 + headers.count)

            var topic = rd_kafka_vu_t()
            topic.vtype = RD_KAFKA_VTYPE_TOPIC
            topic.u.cstr = base.advanced(by: topicOffset).assumingMemoryBound(to: CChar.self)
            values.append(topic)

            if let partition {
                var entry = rd_kafka_vu_t()
                entry.vtype = RD_KAFKA_VTYPE_PARTITION
                entry.u.i32 = partition
                values.append(entry)
            }
            if let key {
                var entry = rd_kafka_vu_t()
                entry.vtype = RD_KAFKA_VTYPE_KEY
                entry.u.mem.ptr = pointer(key.lowerBound)
                entry.u.mem.size = key.count
                values.append(entry)
            }
            if let value {
                var entry = rd_kafka_vu_t()
                entry.vtype = RD_KAFKA_VTYPE_VALUE
                entry.u.mem.ptr = pointer(value.lowerBound)
                entry.u.mem.size = value.count
                values.append(entry)
            }
            for header in headers {
                var entry = rd_kafka_vu_t()
                entry.vtype = RD_KAFKA_VTYPE_HEADER
                entry.u.header.name = base.advanced(by: header.name).assumingMemoryBound(to: CChar.self)
                entry.u.header.val = UnsafeRawPointer(pointer(header.value.lowerBound))
                entry.u.header.size = header.value.count
                values.append(entry)
            }

            var opaque = rd_kafka_vu_t()
            opaque.vtype = RD_KAFKA_VTYPE_OPAQUE
            // Ids start at 1, so the pointer is never null.
            opaque.u.ptr = UnsafeMutableRawPointer(bitPattern: UInt(id))
            values.append(opaque)

            var flags = rd_kafka_vu_t()
            flags.vtype = RD_KAFKA_VTYPE_MSGFLAGS
            // Copy, never block: a full queue fails the call at once.
            flags.u.i = RD_KAFKA_MSG_F_COPY
            values.append(flags)

            return values.withUnsafeBufferPointer(body)
        }
    }
}
