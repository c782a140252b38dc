//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Testing

@testable import CourierCore

/// A value delivered once to whoever waits for it.
@Suite struct OneShotTests {
    @Test func everyWaiterGetsTheValue() async {
        let shot = OneShot<Int>()
        await withTaskGroup(of: Int.self) { group in
            for _ in 0..<5 { group.addTask { await shot.value } }
            try? await Task.sleep(for: .milliseconds(50))  // most of them wait by now
            shot.deliver(7)
            var values: [Int] = []
            for await value in group { values.append(value) }
            #expect(values == [7, 7, 7, 7, 7])
        }
    }

    @Test func aDeliveryBeforeTheWaitCountsAndLaterOnesAreIgnored() async {
        let shot = OneShot<String>()
        shot.deliver("first")
        shot.deliver("second")
        #expect(await shot.value == "first")
        #expect(await shot.value == "first")
    }
}
