//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// Where a Kafka client instance receives the replies to its requests.
///
/// Courier never reads replies through a consumer group: a rebalance could move a reply partition to another
/// instance mid-call (NestJS's most reported Kafka RPC failure). Instead each client instance reads one explicit
/// partition by manual assignment, starting at its high watermark, and names it in every request
/// (`kafka_replyTopic`, `kafka_replyPartition`); workers, NestJS's and Spring's included, reply exactly there.
///
/// **Scaling rule:** every client instance that runs at the same time needs its own (topic, partition) pair — give
/// each instance a distinct partition of a shared reply topic (the topic needs at least as many partitions as
/// instances) or a topic of its own. Two instances on the same pair would each see the other's replies and drop
/// them as unknown, so their calls would time out. The topic must exist before the client connects.
public struct KafkaReplyStrategy: Sendable, Hashable, CustomStringConvertible {
    /// The reply topic.
    public let topic: String
    /// The partition of ``topic`` this instance owns.
    public let partition: Int32

    /// Replies go to `partition` of `topic`, which this instance alone reads.
    public static func partition(_ partition: Int32, of topic: String) -> KafkaReplyStrategy {
        KafkaReplyStrategy(topic: topic, partition: partition)
    }

    /// Partition 0 of `courier.replies`: right for a single client instance.
    public static let singleInstance = KafkaReplyStrategy.partition(0, of: "courier.replies")

    /// Reads `replyTopic` (default `courier.replies`) and `replyPartition` (default `0`) from a `kafka://` URL.
    public init(url: TransportURL) throws {
        let topic = url.options["replyTopic"] ?? KafkaReplyStrategy.singleInstance.topic
        try KafkaTopicName.validate(topic)
        var partition: Int32 = 0
        if let text = url.options["replyPartition"] {
            guard let value = Int32(text), value >= 0 else {
                throw CourierError(.unprocessable, "replyPartition must be a partition number, got '\(text)'")
            }
            partition = value
        }
        self.init(topic: topic, partition: partition)
    }

    private init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}
