//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTesting
import Testing

/// The in-memory transport is for users' unit tests; running the conformance suite on it keeps it honest (it must
/// behave like a real transport where it claims to).
struct InMemoryHarness: ConformanceHarness {
    let hub = InMemoryTransport()
    var features: TransportFeatures { TransportFeatures() }
    func makeServer() throws -> any ServerTransport { hub.server }
    func waitUntilServing(_ server: any ServerTransport) async throws { await hub.waitUntilServing() }
    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport { hub.makeClient() }
}

/// Serialized: scenarios assert on timing (timeouts, deadline extensions), which parallel runs on a 2-core
/// machine would blur.
@Suite(.serialized) struct InMemoryConformanceTests {
    @Test(arguments: TransportConformance.scenarios)
    func conformance(_ scenario: TransportConformance.Scenario) async throws {
        try await scenario.run(InMemoryHarness())
    }
}
