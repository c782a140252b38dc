//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// Where a produced message was stored: the broker acknowledged it at this topic, partition and offset.
public struct KafkaDeliveryReport: Sendable, Hashable {
    /// The identifier ``KafkaProducer/produce(topic:partition:key:value:headers:)`` returned for the message.
    public var messageID: UInt64
    /// The topic the message was written to.
    public var topic: String
    /// The partition the message was written to.
    public var partition: Int32
    /// The message's offset in its partition.
    public var offset: Int64

    /// Creates a delivery report.
    public init(messageID: UInt64, topic: String, partition: Int32, offset: Int64) {
        self.messageID = messageID
        self.topic = topic
        self.partition = partition
        self.offset = offset
    }
}
