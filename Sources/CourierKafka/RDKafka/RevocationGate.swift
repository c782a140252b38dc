//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Foundation

/// Holds a consumer's rebalance callback until the reader has finished the records of the partitions being
/// revoked, or a timeout passes.
///
/// The callback runs on the poll thread, a plain OS thread, so it may block; the partitions stay assigned while it
/// does, which lets the reader store the offsets of records it finishes meanwhile. librdkafka commits those when
/// the callback then unassigns (with auto-commit on), so the partitions' next owner starts after them instead of
/// handling them again.
final class RevocationGate: @unchecked Sendable {
    // @unchecked: every field is read and written with `condition` locked.
    private let condition = NSCondition()
    private var armed = false
    private var released = false
    /// The number of the revocation armed last; a release naming an earlier one (that timed out) is ignored.
    private var revocation: UInt64 = 0

    /// Called before the revocation is announced, so a release that comes before ``wait(timeout:)`` counts.
    /// Returns the revocation's number, for ``release(revocation:)``.
    func arm() -> UInt64 {
        condition.lock()
        defer { condition.unlock() }
        armed = true
        released = false
        revocation += 1
        return revocation
    }

    /// Disarms without waiting (the revocation could not be announced to anyone).
    func disarm() {
        condition.lock()
        armed = false
        condition.unlock()
    }

    /// Blocks the calling thread until ``release()`` or `timeout`; returns whether it was released.
    func wait(timeout: Duration) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.milliseconds) / 1000)
        condition.lock()
        defer {
            armed = false
            condition.unlock()
        }
        while !released {
            if !condition.wait(until: deadline) { break }
        }
        return released
    }

    /// Lets the waiting callback go on; ignored when nothing is armed, or when `revocation` names another one than
    /// the one armed (the late release of a revocation that timed out must not cut a later one short).
    func release(revocation: UInt64? = nil) {
        condition.lock()
        if armed, revocation == nil || revocation == self.revocation {
            released = true
            condition.signal()
        }
        condition.unlock()
    }
}
