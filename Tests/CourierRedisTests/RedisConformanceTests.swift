//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierRedis
import CourierTesting
import Logging
import Testing

/// Redis pub/sub on a server of the scenario's own.
struct RedisPubSubHarness: ConformanceHarness {
    let configuration: RedisPubSubConfiguration

    /// A PUBLISH nobody receives fails at once.
    var features: TransportFeatures { TransportFeatures(unknownPatterns: .unavailable) }

    static var quietLogger: Logger {
        var logger = Logger(label: "test.redis")
        logger.logLevel = .critical
        return logger
    }

    func makeServer() throws -> any ServerTransport {
        RedisServerTransport(configuration: configuration, logger: Self.quietLogger)
    }

    func waitUntilServing(_ server: any ServerTransport) async throws {
        try await (server as! RedisServerTransport).waitUntilSubscribed()
    }

    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport {
        RedisClientTransport(configuration: configuration, logger: Self.quietLogger)
    }
}

/// Each scenario gets a `redis-server` of its own: pub/sub channels are server-wide, so scenarios sharing one would
/// hear each other.
@Suite(.serialized) struct RedisConformanceTests {
    @Test(arguments: TransportConformance.scenarios)
    func pubSub(_ scenario: TransportConformance.Scenario) async throws {
        try await withRedisServer { server in
            try await scenario.run(RedisPubSubHarness(configuration: RedisPubSubConfiguration(connection: server.configuration)))
        }
    }

    @Test(arguments: TransportConformance.scenarios)
    func pubSubOnAscendersFormat(_ scenario: TransportConformance.Scenario) async throws {
        try await withRedisServer { server in
            try await scenario.run(
                RedisPubSubHarness(
                    configuration: RedisPubSubConfiguration(connection: server.configuration, format: .ascender)
                )
            )
        }
    }
}

/// Redis Streams on a server of the scenario's own, with a short claim idle time.
struct RedisStreamsHarness: ConformanceHarness {
    let configuration: RedisStreamsConfiguration

    /// A request nobody reads waits in its stream until it times out.
    var features: TransportFeatures { TransportFeatures(unknownPatterns: .timeout) }

    func makeServer() throws -> any ServerTransport {
        RedisStreamsServerTransport(configuration: configuration, logger: RedisPubSubHarness.quietLogger)
    }

    func waitUntilServing(_ server: any ServerTransport) async throws {
        try await (server as! RedisStreamsServerTransport).waitUntilReading()
    }

    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport {
        RedisStreamsClientTransport(configuration: configuration, logger: RedisPubSubHarness.quietLogger)
    }
}

extension RedisConformanceTests {
    @Test(arguments: TransportConformance.scenarios)
    func streams(_ scenario: TransportConformance.Scenario) async throws {
        try await withRedisServer { server in
            var configuration = RedisStreamsConfiguration(connection: server.configuration, blockTime: .milliseconds(500))
            configuration.claimIdleTime = .seconds(2)
            configuration.claimInterval = .milliseconds(200)  // wildcard streams are found this often
            try await scenario.run(RedisStreamsHarness(configuration: configuration))
        }
    }
}
