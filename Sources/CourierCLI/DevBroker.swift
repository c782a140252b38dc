//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import CourierKafka
import UnixSignals

struct DevBroker: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev-broker",
        abstract: "Run an in-process Kafka cluster (librdkafka's mock) for local development and tests.",
        discussion: """
            Prints one line 'ready kafka://HOST:PORT[,HOST:PORT...]' on stdout once the brokers listen (on \
            127.0.0.1, ephemeral ports). SIGTERM or SIGINT stop it. Unknown topics auto-create with 4 \
            partitions; there is no admin API, so create topics up front with --topic. Consumer groups should \
            use session.timeout.ms=6000, and each partition keeps only about 5 MB.
            """
    )

    @Option(name: .long, help: "How many brokers to run.")
    var brokers: Int = 1

    @Option(name: .customLong("topic"), help: "A topic to create, as NAME:PARTITIONS (repeatable).")
    var topics: [String] = []

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        guard brokers >= 1 else { throw ValidationError("--brokers must be at least 1") }
        _ = try parsedTopics()
    }

    func parsedTopics() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for topic in topics {
            guard let colon = topic.lastIndex(of: ":"), let partitions = Int(topic[topic.index(after: colon)...]),
                partitions >= 1, colon != topic.startIndex
            else {
                throw ValidationError("topic '\(topic)' is not NAME:PARTITIONS with PARTITIONS at least 1")
            }
            result[String(topic[..<colon])] = partitions
        }
        return result
    }

    func run() async throws {
        bootstrapLogging(level: logLevel)
        // Trap the signals before announcing readiness, so a signal right after `ready` is never lost.
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        let cluster: EmbeddedKafkaCluster
        do {
            cluster = try await EmbeddedKafkaCluster(brokers: brokers, topics: try parsedTopics())
        } catch {
            printError(error)
            throw ExitCode(1)
        }
        printLine("ready kafka://\(cluster.bootstrapServers)")
        for await _ in signals { break }
        cluster.close()
        await cluster.waitUntilClosed()
    }
}
