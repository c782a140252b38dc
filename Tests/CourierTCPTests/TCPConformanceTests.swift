//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTCP
import CourierTesting
import Testing

/// Serves on a free loopback port.
struct TCPHarness: ConformanceHarness {
    var configuration = TCPConfiguration(host: "127.0.0.1", port: 0)
    var features: TransportFeatures { TransportFeatures() }

    func makeServer() throws -> any ServerTransport { TCPServerTransport(configuration: configuration) }

    func waitUntilServing(_ server: any ServerTransport) async throws {
        _ = try await (server as! TCPServerTransport).localAddress()
    }

    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport {
        let port = try await (server as! TCPServerTransport).localAddress().port!
        var client = configuration
        client.port = port
        return TCPClientTransport(configuration: client)
    }
}

/// Serialized: scenarios assert on timing (timeouts, deadline extensions), which parallel runs on a 2-core
/// machine would blur.
@Suite(.serialized) struct TCPConformanceTests {
    @Test(arguments: TransportConformance.scenarios)
    func conformance(_ scenario: TransportConformance.Scenario) async throws {
        try await scenario.run(TCPHarness())
    }

    @Test(arguments: TransportConformance.scenarios)
    func conformanceWithHandlersOffTheEventLoop(_ scenario: TransportConformance.Scenario) async throws {
        try await scenario.run(
            TCPHarness(configuration: TCPConfiguration(host: "127.0.0.1", port: 0, runsHandlersOnEventLoop: false))
        )
    }

    /// Emits that return once their events are queued (`eventAcks=false`): every scenario's events still arrive.
    @Test(arguments: TransportConformance.scenarios)
    func conformanceWithUnacknowledgedEvents(_ scenario: TransportConformance.Scenario) async throws {
        var configuration = TCPConfiguration(host: "127.0.0.1", port: 0)
        configuration.awaitsEventAcknowledgement = false
        try await scenario.run(TCPHarness(configuration: configuration))
    }

    /// Courier to Courier over Ascender's JSON lines: everything works, through Courier's extensions to the format.
    @Test(arguments: TransportConformance.scenarios)
    func conformanceOnAscendersFormat(_ scenario: TransportConformance.Scenario) async throws {
        var configuration = TCPConfiguration(host: "127.0.0.1", port: 0)
        configuration.format = .ascender
        try await scenario.run(TCPHarness(configuration: configuration))
    }
}
