//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// How the Kafka transports reach the cluster and tune librdkafka.
public struct KafkaConfiguration: Sendable {
    /// The brokers to contact first, as `host:port[,host:port…]`.
    public var bootstrapServers: String

    /// The consumer group of a worker (``KafkaServerTransport``). Instances of one service share it, so each
    /// record is handled by one of them; it must never be the group of a client or of a NestJS service.
    ///
    /// Default: `"courier-workers"`
    public var groupID: String

    /// librdkafka properties for every handle (producer and consumer), such as SASL/SSL settings. Any property
    /// librdkafka knows may be given; Courier's own settings win where they conflict.
    ///
    /// Default: `["socket.nagle.disable": "true"]`
    public var properties: [String: String]

    /// librdkafka properties for consumers only, applied after ``properties``.
    ///
    /// Default: ``lowLatencyConsumer`` plus `"auto.offset.reset": "earliest"` (a new group starts at the
    /// beginning, so no request sent before the first worker joined is lost)
    public var consumerProperties: [String: String]

    /// librdkafka properties for producers only, applied after ``properties``.
    ///
    /// Default: ``lowLatencyProducer``
    public var producerProperties: [String: String]

    /// Whether a client's `emit` returns only once the broker acknowledged the event (its delivery report). When
    /// `false`, `emit` returns as soon as librdkafka queued the event: faster, but a failed delivery is only
    /// logged. Either way, while librdkafka's local queue is full, `emit` waits for room.
    ///
    /// Default: `true`
    public var awaitsEventAcknowledgement: Bool = true

    /// How a client encodes the correlation id and reply partition of its requests: NestJS's text, or Spring's
    /// binary form for calling Spring `@KafkaListener`/`@SendTo` workers. Workers read both whatever this says.
    ///
    /// Default: ``KafkaRequestHeaderFormat/nestJS``
    public var requestHeaders: KafkaRequestHeaderFormat = .nestJS

    /// What a worker does with an event whose handler throws.
    ///
    /// Default: ``KafkaEventFailurePolicy/deadLetter(retries:initialBackoff:suffix:)`` (3 retries from 100 ms, then
    /// `<topic>.dlq`)
    public var eventFailures: KafkaEventFailurePolicy = .deadLetter()

    /// How long a worker that loses partitions in a rebalance may hold the rebalance while the records it already
    /// took from them finish. Their offsets are then committed before the partitions move, so the next owner does
    /// not handle them again; records still running after this time are handled again there (at least once).
    /// Keep it below `max.poll.interval.ms` (librdkafka's default: 300 s).
    ///
    /// Default: 15 seconds
    public var revocationTimeout: Duration = .seconds(15)

    /// How long a worker waits before it handles a record again whose reply (or dead letter) could not reach the
    /// broker, such as while the broker is unreachable for longer than `message.timeout.ms`. The record's offset
    /// cannot be stored before it is finished (that would skip it), so its partition waits while the worker
    /// handles it again in place, as Spring Kafka's error handler seeks back to it: its handler runs again, and
    /// each further attempt waits twice as long as the one before, up to ``maxRedeliveryBackoff``, until the
    /// record is finished or the worker stops (it then comes back after the restart or a rebalance).
    ///
    /// Default: 1 second
    public var redeliveryBackoff: Duration = .seconds(1)

    /// The longest wait between two attempts at a record whose reply could not reach the broker (see
    /// ``redeliveryBackoff``).
    ///
    /// Default: 30 seconds
    public var maxRedeliveryBackoff: Duration = .seconds(30)

    /// Whether and how workers and clients create missing request, reply and dead-letter topics.
    ///
    /// Default: `nil` (topics must exist, or the brokers must auto-create them)
    public var topicCreation: KafkaTopicCreation?

    /// The most records a worker holds between the consumer and its handlers. Past it, reading pauses (the
    /// consumer's partitions are paused while it keeps polling, so the group is undisturbed).
    ///
    /// Default: `1_000`
    public var maxBufferedRecords: Int

    /// How many records of one partition a worker handles at once.
    ///
    /// With `1`, a partition's handlers run one after another in offset order (what NestJS and Spring users
    /// expect). Above `1`, up to that many handlers of a partition overlap: they start in offset order but may
    /// finish in any order (a failing event's retries no longer hold back the records after it). Either way
    /// offsets are stored strictly in order, and the next record's handler never waits for the broker to
    /// acknowledge the previous record's reply. Different partitions always run concurrently, up to
    /// `MicroserviceConfiguration.maxConcurrentHandlers` in all.
    ///
    /// Default: `1`
    public var partitionConcurrency: Int = 1

    /// Consumer settings for request/reply latency: brokers answer fetches after at most 10 ms
    /// (`fetch.wait.max.ms`), instead of librdkafka's 500.
    public static let lowLatencyConsumer: [String: String] = ["fetch.wait.max.ms": "10"]

    /// Producer settings for request/reply latency: send at once (`linger.ms=0`) instead of batching for 5 ms.
    public static let lowLatencyProducer: [String: String] = ["linger.ms": "0"]

    /// Creates a configuration; every parameter but the brokers has the documented default.
    public init(
        bootstrapServers: String,
        groupID: String = "courier-workers",
        properties: [String: String] = ["socket.nagle.disable": "true"],
        consumerProperties: [String: String] = KafkaConfiguration.lowLatencyConsumer.merging(
            ["auto.offset.reset": "earliest"]
        ) { _, new in new },
        producerProperties: [String: String] = KafkaConfiguration.lowLatencyProducer,
        maxBufferedRecords: Int = 1_000
    ) {
        self.bootstrapServers = bootstrapServers
        self.groupID = groupID
        self.properties = properties
        self.consumerProperties = consumerProperties
        self.producerProperties = producerProperties
        self.maxBufferedRecords = maxBufferedRecords
    }

    /// Reads a `kafka://host:port[,host:port…]` URL. Query options: `group` (``groupID``); `createTopics`, the
    /// partition count of created topics (``topicCreation``; `-1` for the broker's default) and
    /// `replicationFactor`; `headers` (`nestjs` or `spring`, ``requestHeaders``); `partitionConcurrency`
    /// (``partitionConcurrency``); `maxBufferedRecords` (``maxBufferedRecords``); `eventAcks` (`true` or `false`,
    /// ``awaitsEventAcknowledgement``); `replyTopic` and `replyPartition` are read by ``KafkaReplyStrategy/init(url:)``; any
    /// other key is passed to librdkafka as a property (to ``consumerProperties`` or ``producerProperties`` when
    /// librdkafka applies it to one kind of client only, such as `session.timeout.ms` or `linger.ms`)
    /// (`kafka://b1:9092?security.protocol=SASL_SSL&sasl.mechanisms=PLAIN`).
    public init(url: TransportURL) throws {
        guard url.scheme == "kafka" else { throw CourierError(.unprocessable, "not a Kafka URL: \(url)") }
        guard url.user == nil, url.password == nil else {
            throw CourierError(.unprocessable, "a Kafka URL takes no user or password: give SASL credentials as "
                + "librdkafka properties (?security.protocol=SASL_SSL&sasl.mechanisms=PLAIN&sasl.username=…&sasl.password=…)")
        }
        guard url.path.isEmpty else {
            throw CourierError(.unprocessable, "a Kafka URL takes no path, got '/\(url.path)'")
        }
        // librdkafka reads an IPv6 address only in brackets when a port follows it.
        let servers = url.endpoints.map { endpoint in
            let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
            return "\(host):\(endpoint.port ?? 9092)"
        }.joined(separator: ",")
        self.init(bootstrapServers: servers)
        for (key, value) in url.options {
            switch key {
            case "group": groupID = value
            case "createTopics", "replicationFactor":
                guard let count = Int(value), count == -1 || count > 0 else {
                    throw CourierError(.unprocessable, "\(key) must be a positive count or -1, got '\(value)'")
                }
                if key == "createTopics" {
                    topicCreation = KafkaTopicCreation(partitions: count,
                                                       replicationFactor: topicCreation?.replicationFactor ?? -1)
                } else {
                    topicCreation = topicCreation ?? KafkaTopicCreation()
                    topicCreation?.replicationFactor = count
                }
            case "headers":
                guard let format = KafkaRequestHeaderFormat(name: value) else {
                    throw CourierError(.unprocessable, "headers must be nestjs or spring, got '\(value)'")
                }
                requestHeaders = format
            case "partitionConcurrency", "maxBufferedRecords":
                guard let count = Int(value), count >= 1 else {
                    throw CourierError(.unprocessable, "\(key) must be at least 1, got '\(value)'")
                }
                if key == "partitionConcurrency" { partitionConcurrency = count } else { maxBufferedRecords = count }
            case "eventAcks":
                guard let awaits = Bool(value) else {
                    throw CourierError(.unprocessable, "eventAcks must be true or false, got '\(value)'")
                }
                awaitsEventAcknowledgement = awaits
            case "replyTopic", "replyPartition": break
            default:
                // A handle of the other kind would warn (CONFWARN) about a property it ignores.
                switch Self.clientKind(ofProperty: key) {
                case .consumer: consumerProperties[key] = value
                case .producer: producerProperties[key] = value
                case nil: properties[key] = value
                }
            }
        }
        if url.options["createTopics"] == nil, url.options["replicationFactor"] != nil {
            throw CourierError(.unprocessable, "replicationFactor applies to created topics: add createTopics")
        }
    }

    private enum ClientKind { case consumer, producer }

    /// Whether librdkafka applies `property` to consumers or producers only (nil: both, or unknown to Courier).
    private static func clientKind(ofProperty property: String) -> ClientKind? {
        let consumerOnly: Set<String> = [
            "session.timeout.ms", "heartbeat.interval.ms", "max.poll.interval.ms", "auto.offset.reset",
            "enable.auto.commit", "auto.commit.interval.ms", "enable.auto.offset.store", "partition.assignment.strategy",
            "isolation.level", "enable.partition.eof", "check.crcs", "group.instance.id", "group.protocol.type",
            "coordinator.query.interval.ms", "queued.min.messages", "queued.max.messages.kbytes",
        ]
        let producerOnly: Set<String> = [
            "linger.ms", "queue.buffering.max.ms", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
            "batch.num.messages", "batch.size", "acks", "request.required.acks", "compression.type", "compression.codec",
            "compression.level", "enable.idempotence", "delivery.timeout.ms", "message.timeout.ms",
            "message.send.max.retries", "transactional.id", "transaction.timeout.ms", "partitioner",
            "sticky.partitioning.linger.ms", "request.timeout.ms",
        ]
        if consumerOnly.contains(property) || property.hasPrefix("fetch.") { return .consumer }
        if producerOnly.contains(property) { return .producer }
        return nil
    }

    var consumerSettings: [String: String] { properties.merging(consumerProperties) { _, new in new } }
    var producerSettings: [String: String] { properties.merging(producerProperties) { _, new in new } }
}
