//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Logging
import Synchronization

/// An in-process Kafka cluster for tests and local development: librdkafka's mock cluster.
///
/// The brokers listen on loopback and speak enough of the Kafka protocol for librdkafka-based clients (Courier's,
/// `kcat`, confluent-kafka) to produce, consume with headers and keys, join consumer groups and commit offsets.
/// It needs no download and starts in tens of milliseconds.
///
/// Limits of librdkafka 2.0.2's mock cluster to design tests around:
/// - Each broker listens on `127.0.0.1` on an ephemeral port; read ``bootstrapServers``, it cannot be chosen.
/// - There is no admin API: `CreateTopics`/`DeleteTopics` time out. Create topics with ``createTopic(_:partitions:)``
///   or the `topics` argument; unknown topics are auto-created with 4 partitions on first use.
/// - Each partition retains only about 5 MB; older messages are dropped (the log start offset moves).
/// - Consumer groups are slow to form: the first join takes a fixed ~3 s, and a join or leave in a non-empty
///   group waits `session.timeout.ms` − 1 s. Set `session.timeout.ms=6000` (and `heartbeat.interval.ms=1000`)
///   in consumers that join groups, or the default 45 s makes that 44 s.
/// - Fetches are held for the full `fetch.wait.max.ms`; use about 10 ms in tests for low latency.
/// - Topic names are not validated.
///
/// The cluster lives until ``close()`` or until the object is released. The brokers stop on a thread of their own
/// (stopping several takes up to about a second); ``waitUntilClosed()`` waits for that.
public final class EmbeddedKafkaCluster: Sendable {
    private struct MockCluster: @unchecked Sendable {
        // @unchecked: the mock cluster is thread-safe (it runs on its own thread); this only carries the pointer.
        let pointer: OpaquePointer
    }

    /// The host handle the mock cluster is attached to; librdkafka requires one for its bookkeeping.
    private let host: RDKafkaClient
    /// The cluster, or nil once closed.
    private let cluster: Mutex<MockCluster?>

    /// The brokers' addresses as a Kafka `bootstrap.servers` list, e.g. `127.0.0.1:41415`.
    public let bootstrapServers: String

    /// Starts a cluster.
    ///
    /// librdkafka's mock cluster answers its commands (starting, creating a topic) on its own thread while the
    /// caller blocks; those calls run on a thread of their own, never on Swift concurrency's pool.
    ///
    /// - Parameters:
    ///   - brokers: How many brokers to run. Default: `1`.
    ///   - topics: Topics to create up front, name to partition count. Default: none (topics auto-create
    ///     with 4 partitions).
    /// - Throws: ``CourierError/Code/transportUnavailable`` if the cluster cannot start, or
    ///   ``CourierError/Code/unprocessable`` if a topic cannot be created.
    public init(brokers: Int = 1, topics: [String: Int] = [:]) async throws {
        guard brokers >= 1, brokers <= Int(Int32.max) else {
            throw CourierError(.unprocessable, "an embedded Kafka cluster needs at least one broker, not \(brokers)")
        }
        for (name, partitions) in topics { try Self.validate(partitions: partitions, of: name) }
        let (host, mock, bootstrapServers) = try await BlockingCall.run("rdkafka-mock-start") {
            try Self.start(brokers: brokers, topics: topics)
        }
        self.host = host
        self.cluster = Mutex(mock)
        self.bootstrapServers = bootstrapServers
    }

    /// Starts the mock brokers and creates `topics`; blocks.
    private static func start(brokers: Int, topics: [String: Int]) throws -> (RDKafkaClient, MockCluster, String) {
        let host = try RDKafkaClient(
            type: RD_KAFKA_PRODUCER,
            // The host handle never connects anywhere, so its notices ("No bootstrap.servers configured") are
            // noise; the mock brokers' warnings and errors still come through.
            properties: ["log_level": "4"],
            events: RD_KAFKA_EVENT_ERROR,
            logger: Logger(label: "courier.kafka.embedded-cluster")
        )
        guard let pointer = rd_kafka_mock_cluster_new(host.handle, Int32(brokers)) else {
            host.requestStop()
            host.start(name: "rdkafka-mock")
            throw CourierError(.transportUnavailable, "rd_kafka_mock_cluster_new could not start \(brokers) broker(s)")
        }
        let mock = MockCluster(pointer: pointer)
        // The host's poll thread destroys the cluster once stopped, before the host handle: destroying it joins
        // the brokers' threads, which must not block a caller's task.
        host.start(name: "rdkafka-mock", didStop: { rd_kafka_mock_cluster_destroy(mock.pointer) })
        let bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(pointer))
        do {
            for (name, partitions) in topics.sorted(by: { $0.key < $1.key }) {
                try createTopic(name, partitions: partitions, on: mock)
            }
        } catch {
            host.requestStop()
            throw error
        }
        return (host, mock, bootstrapServers)
    }

    /// Creates a topic with `partitions` partitions (replication factor 1).
    ///
    /// Use this instead of the admin API, which the mock does not implement.
    ///
    /// - Throws: ``CourierError/Code/unprocessable`` naming librdkafka's error, or
    ///   ``CourierError/Code/transportUnavailable`` if the cluster is closed.
    public func createTopic(_ name: String, partitions: Int) async throws {
        try Self.validate(partitions: partitions, of: name)
        try await command("rdkafka-mock-topic") { mock in try Self.createTopic(name, partitions: partitions, on: mock) }
    }

    private static func validate(partitions: Int, of name: String) throws {
        guard partitions >= 1, partitions <= Int(Int32.max) else {
            throw CourierError(.unprocessable, "topic '\(name)' needs at least one partition, not \(partitions)")
        }
    }

    private static func createTopic(_ name: String, partitions: Int, on mock: MockCluster) throws {
        let err = rd_kafka_mock_topic_create(mock.pointer, name, Int32(partitions), 1)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw RDKafkaConfig.error(.unprocessable, "creating topic '\(name)'", err)
        }
    }

    /// Runs a mock-cluster command (which waits for the mock's thread) on a thread of its own, holding the cluster
    /// open meanwhile: ``close()`` waits for a command under way.
    private func command(_ name: String, _ body: @escaping @Sendable (MockCluster) throws -> Void) async throws {
        try await BlockingCall.run(name) { [self] in
            try cluster.withLock { cluster throws in
                guard let cluster else { throw CourierError.unavailable("the embedded Kafka cluster is closed") }
                try body(cluster)
            }
        }
    }

    /// Makes the brokers' metadata report `name` as missing (`UNKNOWN_TOPIC_OR_PART`), for tests.
    ///
    /// The mock cluster auto-creates every topic a Metadata request names (it ignores the request's
    /// `AllowAutoTopicCreation`), so a missing topic on a real broker that does not auto-create can only be
    /// imitated this way. Other requests for the topic still work.
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` if the cluster is closed.
    func simulateMissingTopic(_ name: String) async throws {
        try await command("rdkafka-mock-topic-error") { mock in
            rd_kafka_mock_topic_set_error(mock.pointer, name, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
        }
    }

    /// Makes `broker` the leader of a partition, or leaves the partition without a leader (`nil`), for tests:
    /// records produced to a leaderless partition wait in the producer until it has a leader again.
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` if the cluster is closed,
    ///   ``CourierError/Code/unprocessable`` naming librdkafka's error.
    func setLeader(of topic: String, partition: Int32, to broker: Int32?) async throws {
        try await command("rdkafka-mock-leader") { mock in
            let err = rd_kafka_mock_partition_set_leader(mock.pointer, topic, partition, broker ?? -1)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                throw RDKafkaConfig.error(.unprocessable, "setting the leader of \(topic)[\(partition)]", err)
            }
        }
    }

    /// Stops the brokers without waiting for them; clients connected to them see their connections fail.
    ///
    /// Idempotent. Creating topics fails from now on. Use ``waitUntilClosed()`` to wait until the ports are closed.
    public func close() {
        guard cluster.withLock({ cluster in defer { cluster = nil }; return cluster != nil }) else { return }
        host.requestStop()
    }

    /// Returns once the brokers have stopped after ``close()``. Returns at once if ``close()`` has not been called.
    public func waitUntilClosed() async {
        guard cluster.withLock({ $0 == nil }) else { return }
        await host.shutdown()
    }

    deinit { close() }
}
