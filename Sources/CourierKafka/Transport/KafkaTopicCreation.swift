//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Logging
import Synchronization

/// How the Kafka transports create the topics they need when they are missing.
///
/// With it set (``KafkaConfiguration/topicCreation``), a worker creates the topic of each exact pattern it serves
/// (wildcard routes name no topic) before it subscribes, and the dead-letter topic before its first dead letter; a
/// client creates its reply topic with at least `replyPartition + 1` partitions before it listens. Topics that exist
/// are left as they are. Creation goes through the admin API (``KafkaAdmin``), so the cluster must allow this
/// client to create topics; a refusal makes the worker or client fail to start, naming the topic and the reason.
///
/// Without it, topics must exist or the brokers must create them: a consumer never triggers a broker's
/// auto-creation, so a worker subscribed to a missing topic waits for someone to produce to it first.
public struct KafkaTopicCreation: Sendable, Hashable {
    /// The partitions of each new topic, or -1 for the broker's `num.partitions`. Partitions bound how many worker
    /// instances of one group share a topic's records.
    ///
    /// Default: `-1`
    public var partitions: Int
    /// The replicas of each new partition, or -1 for the broker's `default.replication.factor`.
    ///
    /// Default: `-1`
    public var replicationFactor: Int
    /// Topic-level settings for new topics, such as `retention.ms`.
    ///
    /// Default: none
    public var configuration: [String: String]
    /// How long creating the topics may take.
    ///
    /// Default: 10 seconds
    public var timeout: Duration

    /// Describes how to create missing topics; every parameter has the documented default.
    public init(
        partitions: Int = -1,
        replicationFactor: Int = -1,
        configuration: [String: String] = [:],
        timeout: Duration = .seconds(10)
    ) {
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configuration = configuration
        self.timeout = timeout
    }

    /// The specification of topic `name`, with at least `minimumPartitions` partitions.
    func specification(for name: String, minimumPartitions: Int = 1) -> KafkaTopicSpecification {
        // -1 (the broker's default) cannot promise a minimum; an explicit count can.
        let count = minimumPartitions > 1 ? max(partitions, minimumPartitions) : partitions
        return KafkaTopicSpecification(name: name, partitions: count, replicationFactor: replicationFactor,
                                       configuration: configuration)
    }
}

/// Creates missing topics as ``KafkaConfiguration/topicCreation`` says, each topic at most once per transport.
final class KafkaTopicCreator: Sendable {
    private let configuration: KafkaConfiguration
    private let logger: Logger
    private let ensured = Mutex<Set<String>>([])

    init(configuration: KafkaConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Creates the topics among `names` that do not exist yet; does nothing without a creation policy.
    ///
    /// - Throws: What ``KafkaAdmin/createTopics(_:timeout:)`` throws.
    func ensure(_ names: [String], minimumPartitions: Int = 1) async throws {
        guard let policy = configuration.topicCreation else { return }
        let missing = ensured.withLock { ensured in names.filter { !ensured.contains($0) } }
        guard !missing.isEmpty else { return }
        // A short-lived client: topics are created at start and on a first dead letter, rarely enough.
        let admin = try KafkaAdmin(bootstrapServers: configuration.bootstrapServers,
                                   properties: configuration.properties, logger: logger)
        do {
            let outcome = try await admin.createTopics(
                missing.map { policy.specification(for: $0, minimumPartitions: minimumPartitions) },
                timeout: policy.timeout
            )
            await admin.close()
            let created = outcome.filter { $0.value == .created }.keys.sorted()
            if !created.isEmpty { logger.info("created Kafka topics", metadata: ["topics": "\(created)"]) }
            ensured.withLock { $0.formUnion(missing) }
        } catch {
            await admin.close()
            throw error
        }
    }
}
