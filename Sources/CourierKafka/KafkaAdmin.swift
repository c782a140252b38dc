//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Foundation
import Logging
import Synchronization

/// Cluster administration over librdkafka's admin API: creating topics and reading their partition counts.
///
/// The transports use it to create their request, reply and dead-letter topics when
/// ``KafkaConfiguration/topicCreation`` asks for it, because brokers may not auto-create topics (and a consumer never
/// triggers auto-creation). Results arrive as librdkafka events on the admin handle's own poll thread; a metadata
/// request, which blocks in librdkafka, runs on a short-lived thread of its own. Nothing blocks Swift concurrency's
/// pool.
///
/// Call ``close()`` when done.
public final class KafkaAdmin: Sendable {
    /// The outcome of creating one topic.
    public enum TopicCreation: Sendable, Hashable {
        /// The broker created the topic.
        case created
        /// The topic existed already; it was left as it was.
        case alreadyExisted
    }

    private let client: RDKafkaClient
    private let pending: PendingAdminRequests

    /// Creates an admin client and starts its poll thread.
    ///
    /// - Parameters:
    ///   - bootstrapServers: The brokers to contact first, as `host:port[,host:port…]`.
    ///   - properties: Any other librdkafka properties (SASL/SSL settings). Default: none.
    ///   - logger: Where librdkafka's logs and errors go. Default: a logger labelled `courier.kafka.admin`.
    /// - Throws: ``CourierError/Code/unprocessable`` for a property librdkafka rejects,
    ///   ``CourierError/Code/transportUnavailable`` if the handle cannot be created.
    public init(
        bootstrapServers: String,
        properties: [String: String] = [:],
        logger: Logger = Logger(label: "courier.kafka.admin")
    ) throws {
        var properties = properties
        properties["bootstrap.servers"] = bootstrapServers
        // A metadata request must not create the topic it asks about (a producer's default is to allow it).
        properties["allow.auto.create.topics"] = "false"
        let client = try RDKafkaClient(
            type: RD_KAFKA_PRODUCER,
            properties: properties,
            events: RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_LOG,
            logger: logger
        )
        let pending = PendingAdminRequests()
        client.start(
            name: "rdkafka-admin",
            onEvent: { event in
                guard rd_kafka_event_type(event) == RD_KAFKA_EVENT_CREATETOPICS_RESULT else { return }
                pending.complete(event)
            },
            didStop: { pending.failAll(CourierError.unavailable("the Kafka admin client closed")) }
        )
        self.client = client
        self.pending = pending
    }

    /// Creates each topic that does not exist yet.
    ///
    /// - Parameters:
    ///   - topics: The topics and their partition counts.
    ///   - timeout: How long the broker may take. Default: 10 seconds.
    /// - Returns: For each topic name, whether it was created or existed already.
    /// - Throws: ``CourierError/Code/unprocessable`` for an invalid name or a topic the broker refused (naming the
    ///   topic and the broker's reason, such as an authorization failure), ``CourierError/Code/timedOut``,
    ///   ``CourierError/Code/transportUnavailable`` if the cluster cannot be reached or the client is closed.
    @discardableResult
    public func createTopics(
        _ topics: [KafkaTopicSpecification],
        timeout: Duration = .seconds(10)
    ) async throws -> [String: TopicCreation] {
        guard !topics.isEmpty else { return [:] }
        for topic in topics {
            try KafkaTopicName.validate(topic.name)
            // librdkafka takes 32-bit counts; converting a larger one would trap.
            guard Int32(exactly: topic.partitions) != nil, Int32(exactly: topic.replicationFactor) != nil else {
                throw CourierError(.unprocessable, "cannot create topic '\(topic.name)': \(topic.partitions) partitions "
                    + "and replication factor \(topic.replicationFactor) must each fit in 32 bits")
            }
        }
        let milliseconds = Int32(clamping: timeout.milliseconds)
        let results = try await withCheckedThrowingContinuation { continuation in
            let id = pending.register(continuation)
            do {
                try client.withLiveHandle { handle in
                    try Self.requestCreation(topics, id: id, timeoutMilliseconds: milliseconds, handle: handle)
                }
            } catch {
                pending.fail(id, error)
            }
        }
        var outcome: [String: TopicCreation] = [:]
        for result in results {
            switch result.error {
            case RD_KAFKA_RESP_ERR_NO_ERROR: outcome[result.name] = .created
            case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS: outcome[result.name] = .alreadyExisted
            case RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
                throw RDKafkaConfig.error(.timedOut, "creating topic '\(result.name)'", result.error,
                                          detail: result.message)
            case RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
                throw RDKafkaConfig.error(.transportUnavailable, "creating topic '\(result.name)'", result.error,
                                          detail: result.message)
            default:
                throw RDKafkaConfig.error(.unprocessable, "creating topic '\(result.name)'", result.error,
                                          detail: result.message)
            }
        }
        return outcome
    }

    /// The number of partitions of `topic`, or nil if the cluster does not know it.
    ///
    /// - Parameter timeout: How long the metadata request may take. Default: 10 seconds.
    /// - Throws: ``CourierError/Code/transportUnavailable`` if the cluster cannot be reached in time or the client
    ///   is closed.
    public func partitionCount(of topic: String, timeout: Duration = .seconds(10)) async throws -> Int? {
        try KafkaTopicName.validate(topic)
        let milliseconds = Int32(clamping: timeout.milliseconds)
        let client = self.client
        // rd_kafka_metadata blocks for up to the timeout, so it gets a thread of its own.
        return try await BlockingCall.run("rdkafka-metadata") {
            // Holding the handle alive meanwhile: close() waits for this request (at most `timeout`).
            try client.withLiveHandle { handle in
                try Self.partitionCount(of: topic, timeoutMilliseconds: milliseconds, handle: handle)
            }
        }
    }

    /// Stops the poll thread and frees the handle; requests still waiting fail. Idempotent.
    public func close() async {
        await client.shutdown()
    }

    deinit { client.requestStop() }

    // MARK: - librdkafka calls

    private static func requestCreation(
        _ topics: [KafkaTopicSpecification],
        id: Int,
        timeoutMilliseconds: Int32,
        handle: OpaquePointer
    ) throws {
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for topic in topics {
            let (created, message) = RDKafkaConfig.withErrorBuffer { buffer, size in
                rd_kafka_NewTopic_new(topic.name, Int32(topic.partitions), Int32(topic.replicationFactor),
                                      buffer, size)
            }
            guard let created else {
                throw CourierError(.unprocessable, "cannot create topic '\(topic.name)': \(message)")
            }
            newTopics.append(created)
            for (name, value) in topic.configuration.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(created, name, value)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    throw RDKafkaConfig.error(.unprocessable, "setting '\(name)' on topic '\(topic.name)'", err)
                }
            }
        }
        guard let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS) else {
            throw CourierError(.unprocessable, "librdkafka could not allocate admin options")
        }
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = RDKafkaConfig.withErrorBuffer { buffer, size in
            rd_kafka_AdminOptions_set_request_timeout(options, timeoutMilliseconds, buffer, size)
        }
        _ = RDKafkaConfig.withErrorBuffer { buffer, size in
            rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMilliseconds, buffer, size)
        }
        // The request's id travels as the opaque pointer's value; it is never dereferenced.
        rd_kafka_AdminOptions_set_opaque(options, UnsafeMutableRawPointer(bitPattern: id))
        let mainQueue = rd_kafka_queue_get_main(handle)
        defer { rd_kafka_queue_destroy(mainQueue) }
        newTopics.withUnsafeMutableBufferPointer { buffer in
            rd_kafka_CreateTopics(handle, buffer.baseAddress, buffer.count, options, mainQueue)
        }
    }

    private static func partitionCount(
        of topic: String,
        timeoutMilliseconds: Int32,
        handle: OpaquePointer
    ) throws -> Int? {
        try RDKafkaTopicMetadata.request(handle, topic: topic, timeoutMilliseconds: timeoutMilliseconds) { outcome in
            switch outcome {
            case .noTopicHandle:
                throw CourierError(.unprocessable, "librdkafka could not open topic '\(topic)'")
            case .failed(let err):
                throw RDKafkaConfig.error(.transportUnavailable, "reading the metadata of '\(topic)'", err)
            case .answered(nil):
                return nil
            case .answered(let entry?):
                switch entry.pointee.err {
                case RD_KAFKA_RESP_ERR_NO_ERROR: return Int(entry.pointee.partition_cnt)
                case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return nil
                default:
                    throw RDKafkaConfig.error(.transportUnavailable, "reading the metadata of '\(topic)'",
                                              entry.pointee.err)
                }
            }
        }
    }
}

/// A topic for ``KafkaAdmin/createTopics(_:timeout:)``.
public struct KafkaTopicSpecification: Sendable, Hashable {
    /// The topic's name (`[A-Za-z0-9._-]`, at most 249 characters).
    public var name: String
    /// How many partitions it gets; -1 for the broker's `num.partitions` (brokers ≥ 2.4).
    public var partitions: Int
    /// How many replicas each partition gets; -1 for the broker's `default.replication.factor` (brokers ≥ 2.4).
    public var replicationFactor: Int
    /// Topic-level settings, such as `retention.ms` or `cleanup.policy`. Default: none.
    public var configuration: [String: String]

    /// Describes a topic to create.
    public init(name: String, partitions: Int = -1, replicationFactor: Int = -1, configuration: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.configuration = configuration
    }
}

/// Admin requests waiting for their result event, keyed by the id passed as the request's opaque.
private final class PendingAdminRequests: Sendable {
    struct TopicResult: Sendable {
        let name: String
        let error: rd_kafka_resp_err_t
        let message: String?
    }

    typealias Waiter = CheckedContinuation<[TopicResult], any Error>

    private struct State {
        var nextID = 1
        var waiters: [Int: Waiter] = [:]
        var closed: (any Error)?
    }

    private let state = Mutex(State())

    /// Registers `waiter` and returns its id, or resumes it at once with an error if the client has closed.
    func register(_ waiter: Waiter) -> Int {
        let registered = state.withLock { state -> Result<Int, any Error> in
            if let closed = state.closed { return .failure(closed) }
            defer { state.nextID += 1 }
            state.waiters[state.nextID] = waiter
            return .success(state.nextID)
        }
        switch registered {
        case .success(let id):
            return id
        case .failure(let error):
            waiter.resume(throwing: error)
            return 0
        }
    }

    func fail(_ id: Int, _ error: any Error) {
        state.withLock { $0.waiters.removeValue(forKey: id) }?.resume(throwing: error)
    }

    /// Runs on the poll thread with a `RD_KAFKA_EVENT_CREATETOPICS_RESULT`.
    func complete(_ event: OpaquePointer) {
        let id = Int(bitPattern: rd_kafka_event_opaque(event))
        guard let waiter = state.withLock({ $0.waiters.removeValue(forKey: id) }) else { return }
        let err = rd_kafka_event_error(event)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let detail = rd_kafka_event_error_string(event).map { String(cString: $0) }
            let code: CourierError.Code = err == RD_KAFKA_RESP_ERR__TIMED_OUT ? .timedOut : .transportUnavailable
            waiter.resume(throwing: RDKafkaConfig.error(code, "creating topics", err, detail: detail))
            return
        }
        var results: [TopicResult] = []
        if let result = rd_kafka_event_CreateTopics_result(event) {
            var count = 0
            if let topics = rd_kafka_CreateTopics_result_topics(result, &count) {
                for index in 0..<count {
                    guard let topic = topics[index] else { continue }
                    results.append(
                        TopicResult(
                            name: String(cString: rd_kafka_topic_result_name(topic)),
                            error: rd_kafka_topic_result_error(topic),
                            message: rd_kafka_topic_result_error_string(topic).map { String(cString: $0) }
                        )
                    )
                }
            }
        }
        waiter.resume(returning: results)
    }

    func failAll(_ error: any Error) {
        let waiters = state.withLock { state -> [Waiter] in
            state.closed = error
            defer { state.waiters = [:] }
            return Array(state.waiters.values)
        }
        for waiter in waiters { waiter.resume(throwing: error) }
    }
}
