//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample
import CourierTesting
import Logging
import Testing

/// The example service's `load.*` patterns, which `courier bench` relies on.
struct ExampleServiceTests {
    @Test func loadTicksCountsTickEventsAndLoadHoldRepliesAfterItsDelay() async throws {
        let memory = InMemoryTransport()
        let worker = Microservice(router: ExampleService.router(), transport: memory.server,
                                  logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            #expect(try await client.send(ExampleService.loadTicks, NoPayload()) == 0)
            for _ in 0..<5 { try await client.emit(ExampleService.loadTick, [1, 2, 3]) }
            var ticks = 0
            for _ in 0..<200 where ticks < 5 {
                ticks = try await client.send(ExampleService.loadTicks, NoPayload())
                if ticks < 5 { try await Task.sleep(for: .milliseconds(5)) }
            }
            #expect(ticks == 5)

            let clock = ContinuousClock()
            let start = clock.now
            #expect(try await client.send(ExampleService.loadHold, 50) == 50)
            #expect(start.duration(to: clock.now) >= .milliseconds(50))

            await #expect(throws: CourierError.self) { try await client.send(ExampleService.loadHold, -1) }
            await #expect(throws: CourierError.self) { try await client.send(ExampleService.loadHold, 60_001) }
            await client.shutdown()
            group.cancelAll()
        }
    }
}
