//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

@testable import CourierRedis
import Testing

/// The waits between Redis reconnection attempts.
@Suite struct ReconnectBackoffTests {
    /// A wait in whole milliseconds (the waits are computed in floating-point seconds).
    func milliseconds(_ wait: Duration) -> Int { Int((wait / .milliseconds(1)).rounded()) }

    @Test func theDefaultsDoubleFrom100MillisecondsUpTo5Seconds() {
        let backoff = RedisConfiguration.ReconnectBackoff()
        let waits = (1...8).map { milliseconds(backoff.delay(afterFailedAttempts: $0)) }
        #expect(waits == [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000])
    }

    @Test func jitterAddsAtMostItsShare() {
        let backoff = RedisConfiguration.ReconnectBackoff(jitter: 0.5)
        for _ in 0..<200 {
            let wait = milliseconds(backoff.jitteredDelay(afterFailedAttempts: 2))
            #expect(wait >= 200 && wait <= 300, "\(wait)")
        }
    }

    /// Settings that are not finite numbers are read as their documented neutral values instead of trapping
    /// (`Double.random` on an infinite range, `Duration` from NaN), which would crash the process on a reconnect.
    @Test(arguments: [Double.nan, .infinity, -.infinity])
    func nonFiniteSettingsDoNotTrap(value: Double) {
        let backoff = RedisConfiguration.ReconnectBackoff(multiplier: value, jitter: value)
        #expect(milliseconds(backoff.delay(afterFailedAttempts: 3)) == 100)
        #expect(milliseconds(backoff.jitteredDelay(afterFailedAttempts: 3)) == 100)
    }
}
