//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierTestSupport
import Testing

@testable import CourierKafka

/// A lane's queue and a record's pending state under concurrent producers: nothing lost, reordered or left waiting.
@Suite struct KafkaLaneQueueStressTests {
    @Test func theReaderGetsEveryElementInOrderThenNil() async throws {
        for round in 0..<200 {
            let queue = KafkaLaneQueue<Int>()
            let count = round % 50
            let seen = try await finish(within: .seconds(10), "round \(round)") {
                async let reader: [Int] = {
                    var seen: [Int] = []
                    while let element = await queue.next() {
                        seen.append(element)
                        if element % 7 == round % 7 { await Task.yield() }
                    }
                    return seen
                }()
                for index in 0..<count {
                    queue.push(index)
                    if index % 5 == round % 5 { await Task.yield() }
                }
                queue.finish()
                queue.push(-1)
                return await reader
            }
            #expect(seen == Array(0..<count), "round \(round)")
        }
    }

    @Test func pendingRecordWaitersAllWakeWhateverTheOrder() async throws {
        for round in 0..<300 {
            let pending = KafkaPendingRecord(
                KafkaConsumerMessage(topic: "t", partition: 0, offset: Int64(round), key: nil, value: nil, headers: []),
                waitLimit: KafkaDeliveryWaitLimit())
            let replies = round % 4
            for _ in 0..<replies { pending.expectDelivery() }
            let outcome = try await finish(within: .seconds(10), "round \(round)") {
                await withTaskGroup(of: Void.self) { group in
                    group.addTask { _ = await pending.deliveriesSettled() }
                    group.addTask { _ = await pending.finished() }
                    for index in 0..<replies {
                        group.addTask {
                            if index % 2 == round % 2 { await Task.yield() }
                            if index == 0 && round % 3 == 0 {
                                pending.withdrawExpectedDelivery()
                            } else {
                                pending.delivered(.failure(CourierError.unavailable("x")))
                            }
                        }
                    }
                    group.addTask {
                        if round % 2 == 0 { await Task.yield() }
                        pending.handled(.succeeded)
                    }
                }
                return await pending.finished()
            }
            _ = outcome
            #expect(pending.finishedOutcome != nil)
        }
    }
}
