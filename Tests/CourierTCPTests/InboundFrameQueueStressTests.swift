//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import NIOEmbedded
import Testing

@testable import CourierTCP

/// The reader of an InboundFrameQueue cancelled at random points while frames arrive: it ends, in order.
@Suite struct InboundFrameQueueStressTests {
    @Test func aCancelledReaderEndsWhateverTheInterleaving() async throws {
        for round in 0..<300 {
            let channel = NIOAsyncTestingChannel()
            let queue = try await channel.testingEventLoop.executeInContext {
                try InboundFrameQueue.install(on: channel)
            }
            let reader = Task { () -> [Int] in
                var seen: [Int] = []
                while true {
                    switch await queue.next() {
                    case .frame(let buffer): seen.append(Int(String(buffer: buffer))!)
                    default: return seen
                    }
                }
            }
            let bound = Task {
                try? await Task.sleep(for: .seconds(5))
                if !Task.isCancelled { reader.cancel() }
                return !Task.isCancelled
            }
            for index in 0..<(round % 20) {
                try await channel.writeInbound(ByteBuffer(string: "\(index)"))
                if index % 4 == round % 4 { await Task.yield() }
            }
            reader.cancel()
            if round % 3 == 0 { try await channel.writeInbound(ByteBuffer(string: "99")) }
            let seen = await reader.value
            bound.cancel()
            let timedOut = await bound.value
            #expect(!timedOut, "round \(round): the cancelled reader did not end")
            let inOrder = seen.filter { $0 != 99 }
            #expect(inOrder == Array(0..<inOrder.count), "round \(round): \(seen)")
            _ = try? await channel.close()
        }
    }
}
