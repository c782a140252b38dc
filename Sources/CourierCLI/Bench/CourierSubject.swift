//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample

/// Courier's side of a comparison: a ``CourierClient`` calling the example worker, through the typed API an
/// application uses.
struct CourierSubject: CallingBenchSubject {
    let client: CourierClient
    /// How many tasks emit events at once (`emit` returns when the transport accepted the event).
    var emitters = 256
    /// Events per emit call: 1 uses `emit`, more `emitBatch` with batches of this many.
    var emitBatch = 1
    /// The length of each streamed reply (`math.countdown`).
    var streamLength = 10_000

    func roundTrip() async throws {
        let sum = try await client.send(ExampleService.sum, [1, 2, 3])
        guard sum == 6 else { throw CourierError(.unprocessable, "math.sum replied \(sum), not 6") }
    }

    func events(count: Int, counter: BenchCounter) async throws {
        let client = self.client
        let base = try await client.send(ExampleService.loadTicks, NoPayload())
        let emitters = min(self.emitters, count)
        let batchSize = emitBatch
        try await withThrowingDiscardingTaskGroup { group in
            for emitter in 0..<emitters {
                let share = count / emitters + (emitter < count % emitters ? 1 : 0)
                group.addTask {
                    try await client.emitCopies(of: [1, 2, 3], to: ExampleService.loadTick.name, count: share,
                                                batch: batchSize)
                }
            }
        }
        try await waitUntilCounted(base + count, from: base, counter: counter) {
            try await client.send(ExampleService.loadTicks, NoPayload())
        }
    }

    func streamedElements(until deadline: ContinuousClock.Instant, counter: BenchCounter) async throws -> Bool {
        let clock = ContinuousClock()
        while clock.now < deadline {
            var expected = streamLength
            var batch = 0
            for try await element in try await client.sendStream(ExampleService.countdown, streamLength) {
                guard element == expected else {
                    throw CourierError(.unprocessable, "math.countdown sent \(element), expected \(expected)")
                }
                expected -= 1
                batch += 1
                if batch == 256 {
                    counter.add(batch)
                    batch = 0
                }
            }
            counter.add(batch)
            guard expected == 0 else {
                throw CourierError(.unprocessable, "math.countdown ended \(expected) elements early")
            }
        }
        return true
    }

    func shutdown() async {
        await client.shutdown()
    }
}
