//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Testing

@testable import CourierKafka

@Suite struct KafkaConfigurationTests {
    @Test func readsServersGroupAndLibrdkafkaPropertiesFromAURL() throws {
        let configuration = try KafkaConfiguration(
            url: TransportURL("kafka://b1:9093,b2?group=orders&security.protocol=SASL_SSL&replyPartition=2")
        )
        #expect(configuration.bootstrapServers == "b1:9093,b2:9092")
        #expect(configuration.groupID == "orders")
        #expect(configuration.properties["security.protocol"] == "SASL_SSL")
        #expect(configuration.properties["replyPartition"] == nil, "reply options are the reply strategy's")
        #expect(configuration.topicCreation == nil, "topics are not created unless asked")
        #expect(configuration.requestHeaders == .nestJS)
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1?headers=spring")).requestHeaders == .spring)
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1")).partitionConcurrency == 1)
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1?partitionConcurrency=8")).partitionConcurrency == 8)
        #expect(throws: CourierError.self) { try KafkaConfiguration(url: TransportURL("kafka://b1?partitionConcurrency=0")) }
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1?maxBufferedRecords=20000")).maxBufferedRecords == 20_000)
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1?maxBufferedRecords=20000"))
            .properties["maxBufferedRecords"] == nil, "maxBufferedRecords is Courier's, not a librdkafka property")
        #expect(throws: CourierError.self) { try KafkaConfiguration(url: TransportURL("kafka://b1?maxBufferedRecords=0")) }
        #expect(throws: CourierError.self) { try KafkaConfiguration(url: TransportURL("kafka://b1?headers=avro")) }
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1")).awaitsEventAcknowledgement)
        let unacknowledged = try KafkaConfiguration(url: TransportURL("kafka://b1?eventAcks=false"))
        #expect(!unacknowledged.awaitsEventAcknowledgement)
        #expect(unacknowledged.properties["eventAcks"] == nil && unacknowledged.producerProperties["eventAcks"] == nil)
        #expect(throws: CourierError.self) { try KafkaConfiguration(url: TransportURL("kafka://b1?eventAcks=no")) }
    }

    @Test func urlPropertiesOfOneKindOfClientGoOnlyToThatKind() throws {
        let configuration = try KafkaConfiguration(
            url: TransportURL("kafka://b1?session.timeout.ms=6000&fetch.wait.max.ms=5&linger.ms=2&client.id=billing")
        )
        #expect(configuration.consumerProperties["session.timeout.ms"] == "6000")
        #expect(configuration.consumerProperties["fetch.wait.max.ms"] == "5")
        #expect(configuration.producerProperties["linger.ms"] == "2")
        #expect(configuration.properties["client.id"] == "billing")
        #expect(configuration.producerSettings["session.timeout.ms"] == nil, "a producer would warn about it")
        #expect(configuration.consumerSettings["linger.ms"] == nil, "a consumer would warn about it")
    }

    @Test func createTopicsAndReplicationFactorTurnTopicCreationOn() throws {
        let created = try KafkaConfiguration(url: TransportURL("kafka://b1?createTopics=6&replicationFactor=3"))
        #expect(created.topicCreation?.partitions == 6)
        #expect(created.topicCreation?.replicationFactor == 3)
        let brokerDefaults = try KafkaConfiguration(url: TransportURL("kafka://b1?createTopics=-1"))
        #expect(brokerDefaults.topicCreation == KafkaTopicCreation())

        for bad in ["createTopics=0", "createTopics=many", "replicationFactor=3", "createTopics=2&replicationFactor=0"] {
            #expect(throws: CourierError.self, "\(bad)") {
                try KafkaConfiguration(url: TransportURL("kafka://b1?\(bad)"))
            }
        }
    }

    @Test func aCreatedReplyTopicHasEnoughPartitionsForTheReplyPartition() {
        let policy = KafkaTopicCreation(partitions: 2, replicationFactor: 1)
        #expect(policy.specification(for: "courier.replies", minimumPartitions: 5).partitions == 5)
        #expect(policy.specification(for: "courier.replies", minimumPartitions: 1).partitions == 2)
        #expect(policy.specification(for: "orders").replicationFactor == 1)
        // The broker's default count cannot promise a minimum, so an explicit one replaces it.
        #expect(KafkaTopicCreation().specification(for: "r", minimumPartitions: 3).partitions == 3)
        #expect(KafkaTopicCreation().specification(for: "r").partitions == -1)
    }

    /// Credentials and a path in a `kafka://` URL were dropped without a word: `kafka://alice:secret@b1` connected
    /// without SASL. They must be refused (SASL goes in librdkafka properties: `?sasl.username=…`).
    @Test func credentialsAndAPathAreRejected() throws {
        for bad in ["kafka://alice:secret@b1:9092", "kafka://:secret@b1:9092", "kafka://b1:9092/orders"] {
            let error = #expect(throws: CourierError.self, "\(bad)") { try KafkaConfiguration(url: TransportURL(bad)) }
            #expect(error?.code == .unprocessable)
        }
        #expect(try KafkaConfiguration(url: TransportURL("kafka://b1:9092/")).bootstrapServers == "b1:9092")
    }

    /// librdkafka reads `host:port` with more than one `:` and no `]` before the last as an IPv6 address without a
    /// port: an IPv6 broker's port would be lost (and taken as part of its address) without the brackets.
    @Test func ipv6BrokersKeepTheirBrackets() throws {
        let configuration = try KafkaConfiguration(url: TransportURL("kafka://[::1]:9093,[fe80::2],b3:9094"))
        #expect(configuration.bootstrapServers == "[::1]:9093,[fe80::2]:9092,b3:9094")
    }
}
