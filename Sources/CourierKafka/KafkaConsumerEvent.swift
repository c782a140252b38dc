//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// What a ``KafkaConsumer`` delivers, in the order it happened: messages, and the partition assignments and
/// revocations of consumer-group rebalances around them.
///
/// Because one ordered stream carries both, a worker sees a partition's `revoked` event after every message of
/// that partition it was given, and can finish or commit that work before another member takes over.
///
/// A struct rather than a public enum so new kinds of event can be added without breaking switches; read it through
/// ``message``, ``assigned`` and ``revoked``, exactly one of which is non-nil.
public struct KafkaConsumerEvent: Sendable, Hashable {
    private enum Storage: Sendable, Hashable {
        case message(KafkaConsumerMessage)
        case assigned([KafkaTopicPartition])
        /// `revocation` tells one revocation from another (see ``KafkaConsumer/revocationHandled(for:)``).
        case revoked([KafkaTopicPartition], revocation: UInt64)
    }

    private let storage: Storage

    private init(_ storage: Storage) { self.storage = storage }

    /// A message arrived.
    public static func message(_ message: KafkaConsumerMessage) -> KafkaConsumerEvent { .init(.message(message)) }
    /// The group gave this consumer these partitions (in addition to any it already had, for cooperative
    /// rebalancing).
    public static func assigned(_ partitions: [KafkaTopicPartition]) -> KafkaConsumerEvent {
        .init(.assigned(partitions))
    }
    /// The group took these partitions away; no more messages of theirs follow until they are assigned again.
    public static func revoked(_ partitions: [KafkaTopicPartition]) -> KafkaConsumerEvent {
        .init(.revoked(partitions, revocation: 0))
    }

    /// A revocation that the consumer holds until ``KafkaConsumer/revocationHandled(for:)`` names it.
    static func revoked(_ partitions: [KafkaTopicPartition], revocation: UInt64) -> KafkaConsumerEvent {
        .init(.revoked(partitions, revocation: revocation))
    }

    /// The message, if this event is one.
    public var message: KafkaConsumerMessage? {
        if case .message(let message) = storage { return message }
        return nil
    }

    /// The partitions assigned, if this event is an assignment.
    public var assigned: [KafkaTopicPartition]? {
        if case .assigned(let partitions) = storage { return partitions }
        return nil
    }

    /// The partitions revoked, if this event is a revocation.
    public var revoked: [KafkaTopicPartition]? {
        if case .revoked(let partitions, _) = storage { return partitions }
        return nil
    }

    /// Which revocation this is, if it is one.
    var revocation: UInt64? {
        if case .revoked(_, let revocation) = storage { return revocation }
        return nil
    }
}
