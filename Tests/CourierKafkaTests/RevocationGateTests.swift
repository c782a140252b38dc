//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Testing

@testable import CourierKafka

/// The gate that holds a rebalance callback until the worker finished the revoked partitions' records.
@Suite struct RevocationGateTests {
    @Test func aReleaseBeforeTheWaitCounts() {
        let gate = RevocationGate()
        let revocation = gate.arm()
        gate.release(revocation: revocation)
        #expect(gate.wait(timeout: .seconds(5)))
    }

    /// A revocation that timed out is finished later by the worker: that late release must not let a later
    /// revocation go on before the worker finished its partitions.
    @Test func theLateReleaseOfARevocationThatTimedOutDoesNotReleaseTheNextOne() {
        let gate = RevocationGate()
        let first = gate.arm()
        #expect(!gate.wait(timeout: .milliseconds(10)))
        let second = gate.arm()
        #expect(second != first)
        gate.release(revocation: first)
        #expect(!gate.wait(timeout: .milliseconds(50)), "released by the first revocation's late release")
        let third = gate.arm()
        gate.release(revocation: third)
        #expect(gate.wait(timeout: .seconds(5)))
    }

    @Test func aReleaseWithNothingArmedIsIgnored() {
        let gate = RevocationGate()
        gate.release()
        _ = gate.arm()
        #expect(!gate.wait(timeout: .milliseconds(10)))
    }

    @Test func revokedEventsCarryTheirRevocation() {
        let partitions = [KafkaTopicPartition(topic: "t", partition: 0)]
        #expect(KafkaConsumerEvent.revoked(partitions, revocation: 7).revocation == 7)
        #expect(KafkaConsumerEvent.revoked(partitions, revocation: 7).revoked == partitions)
        #expect(KafkaConsumerEvent.assigned(partitions).revocation == nil)
    }
}
