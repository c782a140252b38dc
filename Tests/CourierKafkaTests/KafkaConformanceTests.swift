//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierKafka
import CourierTesting
import Logging
import Testing

/// The transport conformance suite on librdkafka's in-process mock cluster: a fresh cluster per scenario, so no
/// scenario sees another's records.
final class KafkaMockHarness: ConformanceHarness {
    /// Every topic the suite's patterns use (the mock creates none of them for consumers), and the reply topic.
    static let topics: [String: Int] = [
        "math.sum": 4, "math.countdown": 2, "math.fail": 1, "audit.log": 2, "audit.count": 1,
        "probe.crash": 1, "probe.sleep": 2, "probe.extend": 1, "probe.broken-stream": 1, "probe.slow-stream": 1,
        "probe.stalling-stream": 1,
        "probe.header": 1, "probe.has-deadline": 1, "greet.bob": 1, "greet.bob.smith": 1, "greet": 1,
        "math.nothing": 1, "audit.nothing": 1, "courier.replies": 1,
    ]

    let cluster: EmbeddedKafkaCluster
    let configuration: KafkaConfiguration

    init() async throws {
        cluster = try await EmbeddedKafkaCluster(topics: Self.topics)
        var configuration = KafkaConfiguration(bootstrapServers: cluster.bootstrapServers)
        configuration.properties["topic.metadata.refresh.interval.ms"] = "1000"
        configuration.consumerProperties.merge([
            "session.timeout.ms": "6000",
            "heartbeat.interval.ms": "1000",
            "auto.commit.interval.ms": "100",
        ]) { _, new in new }
        self.configuration = configuration
    }

    deinit { cluster.close() }

    var features: TransportFeatures { TransportFeatures(unknownPatterns: .timeout) }

    /// librdkafka warns about the mock's old protocol version on every connection; keep test output readable.
    static var quietLogger: Logger {
        var logger = Logger(label: "courier.kafka.test")
        logger.logLevel = .error
        return logger
    }

    func makeServer() throws -> any ServerTransport {
        KafkaServerTransport(configuration: configuration, logger: Self.quietLogger)
    }

    func waitUntilServing(_ server: any ServerTransport) async throws {
        await (server as! KafkaServerTransport).waitUntilAssigned()
    }

    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport {
        KafkaClientTransport(configuration: configuration, logger: Self.quietLogger)
    }
}

/// Serialized: each scenario starts a cluster and joins a group (about 3 s on the mock).
@Suite(.serialized) struct KafkaConformanceTests {
    @Test(arguments: TransportConformance.scenarios)
    func conformance(_ scenario: TransportConformance.Scenario) async throws {
        try await scenario.run(try await KafkaMockHarness())
    }
}
