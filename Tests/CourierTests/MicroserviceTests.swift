//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTesting
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Worker behaviour that does not depend on the transport: routing rules, concurrency bounds, shutdown, deadlines.
@Suite struct MicroserviceTests {
    static let slow = MessagePattern<Int, String>("test.slow")
    static let onward = MessagePattern<NoPayload, String>("test.onward")
    static let extendedOnward = MessagePattern<NoPayload, String>("test.extended-onward")
    static let failingEvent = EventPattern<Int>("test.event")

    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    /// Counts handlers running at once, and the most seen.
    final class Gauge: Sendable {
        private let state = Mutex((current: 0, peak: 0, finished: 0, cancelled: 0))
        func enter() { state.withLock { $0.current += 1; $0.peak = max($0.peak, $0.current) } }
        func leave(cancelled: Bool) {
            state.withLock {
                $0.current -= 1
                $0.finished += 1
                if cancelled { $0.cancelled += 1 }
            }
        }
        var peak: Int { state.withLock { $0.peak } }
        var finished: Int { state.withLock { $0.finished } }
        var cancelled: Int { state.withLock { $0.cancelled } }
    }

    static func router(gauge: Gauge) -> MessageRouter {
        var router = MessageRouter()
        router.on(slow) { milliseconds, _ in
            gauge.enter()
            let outcome: Result<Void, any Error> = await capture { try await Task.sleep(for: .milliseconds(milliseconds)) }
            gauge.leave(cancelled: (try? outcome.get()) == nil)
            try outcome.get()
            return "slept"
        }
        router.on(onward) { _, context in
            // Calls the slow handler with the default (long) timeout; the caller's own deadline must cap it.
            do {
                _ = try await context.client!.send(slow, 5_000)
                return "onward call finished"
            } catch let error as CourierError {
                return "onward call failed: \(error.code)"
            }
        }
        router.on(extendedOnward) { _, context in
            // Asks for more time, works past the caller's original deadline, then calls onward: the onward call
            // gets the extended deadline, not the original one.
            try await context.extendDeadline(by: .seconds(10))
            try await Task.sleep(for: .milliseconds(2_500))
            do {
                return try await context.client!.send(slow, 100)
            } catch let error as CourierError {
                return "onward call failed: \(error.code)"
            }
        }
        router.on(failingEvent) { _, _ in throw CourierError(.unprocessable, "event handler failed") }
        return router
    }

    /// The test router on an in-memory transport, run as a `ServiceGroup` (so a test can shut it down gracefully),
    /// with its gauge and a client.
    struct GroupedWorker {
        let memory = InMemoryTransport()
        let gauge = Gauge()
        let worker: Microservice
        let group: ServiceGroup
        let client: CourierClient

        init(gracefulShutdownTimeout: Duration) {
            worker = Microservice(
                router: MicroserviceTests.router(gauge: gauge),
                transport: memory.server,
                configuration: MicroserviceConfiguration(gracefulShutdownTimeout: gracefulShutdownTimeout),
                logger: MicroserviceTests.quietLogger
            )
            group = ServiceGroup(services: [worker], logger: MicroserviceTests.quietLogger)
            client = CourierClient(transport: memory.makeClient())
        }
    }

    /// The test router on an in-memory transport, with a client for its handlers' onward calls and one for the test.
    struct OnwardWorker {
        let memory = InMemoryTransport()
        let onwardClient: CourierClient
        let worker: Microservice
        let client: CourierClient

        init(gauge: Gauge = Gauge()) {
            onwardClient = CourierClient(transport: memory.makeClient())
            worker = Microservice(router: MicroserviceTests.router(gauge: gauge), transport: memory.server,
                                  client: onwardClient, logger: MicroserviceTests.quietLogger)
            client = CourierClient(transport: memory.makeClient())
        }

        func shutdown() async {
            await client.shutdown()
            await onwardClient.shutdown()
        }
    }

    @Test func concurrencyIsBoundedAndEveryCallIsServed() async throws {
        let memory = InMemoryTransport()
        let gauge = Gauge()
        let worker = Microservice(
            router: Self.router(gauge: gauge),
            transport: memory.server,
            configuration: MicroserviceConfiguration(maxConcurrentHandlers: 2),
            logger: Self.quietLogger
        )
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            let replies = try await withThrowingTaskGroup(of: String.self) { calls in
                for _ in 0..<6 { calls.addTask { try await client.send(Self.slow, 50) } }
                return try await calls.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(replies == Array(repeating: "slept", count: 6))
            #expect(gauge.peak == 2)
            group.cancelAll()
        }
    }

    @Test func gracefulShutdownCancelsHandlersThatOutliveTheTimeout() async throws {
        let fixture = GroupedWorker(gracefulShutdownTimeout: .milliseconds(200))
        let (memory, gauge, worker, group, client) = (fixture.memory, fixture.gauge, fixture.worker, fixture.group,
                                                      fixture.client)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await memory.waitUntilServing()
            let call = Task { try await client.send(Self.slow, 10_000, timeout: .seconds(20)) }
            while worker.inFlightHandlers == 0 { try await Task.sleep(for: .milliseconds(5)) }
            let clock = ContinuousClock()
            let start = clock.now
            await group.triggerGracefulShutdown()
            try await tasks.next()
            let stopped = clock.now - start
            #expect(stopped < .seconds(5), "the worker took \(stopped) to stop")
            #expect(gauge.cancelled == 1, "the slow handler should have been cancelled")
            let result = await call.result
            #expect(throws: CourierError.self) { try result.get() }
        }
        await client.shutdown()
    }

    /// With no time for a graceful shutdown, the timeout can win before the idle waiter is even registered; the
    /// shutdown must still cancel the handlers and end, every time.
    @Test(.timeLimit(.minutes(1))) func aShutdownWithNoGraceEndsEveryTime() async throws {
        for _ in 0..<30 {
            let fixture = GroupedWorker(gracefulShutdownTimeout: .zero)
            let (memory, gauge, worker, group, client) = (fixture.memory, fixture.gauge, fixture.worker, fixture.group,
                                                          fixture.client)
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                await memory.waitUntilServing()
                let call = Task { try await client.send(Self.slow, 60_000, timeout: .seconds(90)) }
                while worker.inFlightHandlers == 0 { try await Task.sleep(for: .milliseconds(1)) }
                await group.triggerGracefulShutdown()
                try await tasks.next()
                #expect(gauge.cancelled == 1)
                _ = await call.result
            }
            await client.shutdown()
        }
    }

    @Test func messagesArrivingWhileDrainingAreNotHandled() async throws {
        let fixture = GroupedWorker(gracefulShutdownTimeout: .seconds(5))
        let (memory, gauge, worker, group, client) = (fixture.memory, fixture.gauge, fixture.worker, fixture.group,
                                                      fixture.client)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            await memory.waitUntilServing()
            let first = Task { try await client.send(Self.slow, 300) }
            while worker.inFlightHandlers == 0 { try await Task.sleep(for: .milliseconds(5)) }
            await group.triggerGracefulShutdown()
            while !worker.isDraining { try await Task.sleep(for: .milliseconds(5)) }
            // Sent after the drain began: never handled (it fails with no server, or times out unhandled).
            let late = await capture { try await client.send(Self.slow, 1, timeout: .milliseconds(200)) }
            #expect(throws: CourierError.self) { try late.get() }
            #expect(try await first.value == "slept")
            try await tasks.next()
            #expect(gauge.finished == 1, "only the first call may have run")
        }
        await client.shutdown()
    }

    @Test func onwardCallsNeverOutliveTheCallersDeadline() async throws {
        let fixture = OnwardWorker()
        let (memory, worker, client) = (fixture.memory, fixture.worker, fixture.client)
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            let clock = ContinuousClock()
            let start = clock.now
            // The caller allows 1.5 s; the handler's onward call has the default 30 s, so only the caller's
            // deadline can end it; the handler then answers before the caller gives up.
            let reply = await capture { try await client.send(Self.onward, NoPayload(), timeout: .milliseconds(1_500)) }
            let elapsed = clock.now - start
            #expect(elapsed < .seconds(4))
            switch reply {
            case .success(let text): #expect(text == "onward call failed: timedOut(408)")
            case .failure(let error as CourierError): #expect(error.code == .timedOut)
            case .failure(let error): Issue.record("unexpected \(error)")
            }
            group.cancelAll()
        }
        await fixture.shutdown()
    }

    @Test func onwardCallsFollowAnExtendedDeadline() async throws {
        let fixture = OnwardWorker()
        let (memory, worker, client) = (fixture.memory, fixture.worker, fixture.client)
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            // The caller allows 2 s (room for a loaded machine to deliver the extension in time); the handler
            // extends that by 10 s and makes its onward call at 2.5 s, past the original deadline.
            let reply = await capture { try await client.send(Self.extendedOnward, NoPayload(), timeout: .seconds(2)) }
            #expect((try? reply.get()) == "slept", "\(reply)")
            group.cancelAll()
        }
        await fixture.shutdown()
    }

    @Test func failingEventHandlersAreCountedAndNeverAnswered() async throws {
        let memory = InMemoryTransport()
        let worker = Microservice(router: Self.router(gauge: Gauge()), transport: memory.server,
                                  logger: Self.quietLogger)
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            for value in 0..<3 { try await client.emit(Self.failingEvent, value) }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            while worker.failedEvents < 3, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            #expect(worker.failedEvents == 3)
            #expect(client.pendingCalls == 0)
            group.cancelAll()
        }
    }

    /// A batch with one payload that cannot be encoded fails before any event is sent; a good batch then arrives.
    @Test func aBatchWithAnUnencodablePayloadSendsNothing() async throws {
        let memory = InMemoryTransport()
        let reading = EventPattern<Double>("sensor.reading")
        let received = Mutex<[Double]>([])
        var router = MessageRouter()
        router.on(reading) { value, _ in received.withLock { $0.append(value) } }
        let worker = Microservice(router: router, transport: memory.server, logger: Self.quietLogger)
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            let error = await #expect(throws: CourierError.self) {
                try await client.emitBatch(reading, [1.5, .nan, 2.5])
            }
            #expect(error?.code == .encodingFailed)
            try await client.emitBatch(reading, [3.5, 4.5])
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            while received.withLock({ $0.count }) < 2, clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            try await Task.sleep(for: .milliseconds(50))
            #expect(received.withLock { $0 }.sorted() == [3.5, 4.5])
            group.cancelAll()
        }
    }

    /// `maxConcurrentHandlers` is a `var`, so the initializer's precondition does not cover every configuration:
    /// with no handler slot the worker would serve and never handle a message. It must refuse to start instead.
    @Test(.timeLimit(.minutes(1))) func noHandlerSlotsStopTheServiceAtStart() async throws {
        for slots in [0, -1] {
            var configuration = MicroserviceConfiguration()
            configuration.maxConcurrentHandlers = slots
            let memory = InMemoryTransport()
            let worker = Microservice(router: Self.router(gauge: Gauge()), transport: memory.server,
                                      configuration: configuration, logger: Self.quietLogger)
            let client = CourierClient(transport: memory.makeClient())
            let outcome = await withTaskGroup(of: String.self) { group in
                group.addTask {
                    do {
                        try await worker.run()
                        return "returned"
                    } catch let error as CourierError {
                        return error.code == .unprocessable ? "refused" : "threw \(error)"
                    } catch {
                        return "threw \(error)"
                    }
                }
                group.addTask {
                    // Without the refusal, this call is never handled: it times out while the worker serves on.
                    try? await Task.sleep(for: .milliseconds(100))
                    let reply = await capture { try await client.send(Self.slow, 1, timeout: .seconds(3)) }
                    return "call: \(reply)"
                }
                let first = await group.next() ?? "nothing"
                group.cancelAll()
                return first
            }
            await client.shutdown()
            #expect(outcome == "refused", "maxConcurrentHandlers = \(slots)")
        }
    }

    @Test(arguments: [
        ["a.b", "a.b"],  // duplicate
        ["a.**.c"],  // `**` not last
        [""],  // empty
    ])
    func invalidRoutesStopTheServiceAtStart(_ patterns: [String]) async throws {
        var router = MessageRouter()
        for pattern in patterns { router.onEvent(pattern) { _, _ in } }
        #expect(throws: CourierError.self) { try router.validate() }
        let worker = Microservice(router: router, transport: InMemoryTransport().server, logger: Self.quietLogger)
        await #expect(throws: CourierError.self) { try await worker.run() }
    }
}

/// The outcome of an async throwing call, as a `Result`.
func capture<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
    do { return .success(try await body()) } catch { return .failure(error) }
}
