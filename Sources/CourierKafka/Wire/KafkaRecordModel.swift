//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A Kafka record as plain values, between ``KafkaRecordCodec`` and the librdkafka bridge.
///
/// It is the same shape in both directions: records the codec builds go to ``KafkaProducer`` (see
/// ``producerHeaders``), and records the consumer delivers come in through ``init(_:)``.
public struct KafkaRecordModel: Sendable, Hashable {
    /// A record header.
    public typealias Header = KafkaHeader

    /// The topic.
    public var topic: String
    /// The partition, or `nil` to let the producer's partitioner choose (always set on received records).
    public var partition: Int32?
    /// The key, or `nil` for none.
    public var key: [UInt8]?
    /// The value, or `nil` for a null value.
    public var value: [UInt8]?
    /// The headers, in order.
    public var headers: [Header]

    /// Creates a record.
    public init(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8]?,
        headers: [Header] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }

    /// The record a consumer received.
    public init(_ message: KafkaConsumerMessage) {
        self.init(
            topic: message.topic,
            partition: message.partition,
            key: message.key,
            value: message.value,
            headers: message.headers.map { Header(name: $0.name, value: $0.value) }
        )
    }

    /// The value of the **last** header with this name, as Spring's `lastHeader` reads it; `.some(nil)` for a
    /// header present with a null value, `nil` when there is no such header.
    public func lastHeader(named name: String) -> [UInt8]?? {
        guard let header = headers.last(where: { $0.name == name }) else { return nil }
        return .some(header.value)
    }

    /// Whether a header with this name is present, whatever its value.
    public func hasHeader(named name: String) -> Bool {
        headers.contains { $0.name == name }
    }

    /// The headers in ``KafkaProducer``'s form. The producer cannot send null header values, so a `nil` value is
    /// sent as an empty one (the codec never builds such headers).
    public var producerHeaders: [(String, [UInt8])] {
        headers.map { ($0.name, $0.value ?? []) }
    }
}
