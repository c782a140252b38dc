//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A seeded random number generator (SplitMix64) for Courier's own fuzz tests, so a failing input repeats.
package struct SeededRandom: RandomNumberGenerator {
    var state: UInt64

    package init(state: UInt64) {
        self.state = state
    }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
