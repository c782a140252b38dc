//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A message a ``KafkaConsumer`` received, with every byte copied out of librdkafka.
public struct KafkaConsumerMessage: Sendable, Hashable {
    /// A message header.
    public typealias Header = KafkaHeader

    /// The topic the message came from.
    public var topic: String
    /// The partition the message came from.
    public var partition: Int32
    /// The message's offset in its partition.
    public var offset: Int64
    /// The key, or nil if the message has none.
    public var key: [UInt8]?
    /// The value, or nil for a null value.
    public var value: [UInt8]?
    /// The headers in the order they were produced.
    public var headers: [Header]

    /// Creates a message.
    public init(topic: String, partition: Int32, offset: Int64, key: [UInt8]?, value: [UInt8]?, headers: [Header]) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
    }

    /// Where the message came from.
    public var topicPartition: KafkaTopicPartition { KafkaTopicPartition(topic: topic, partition: partition) }
}
