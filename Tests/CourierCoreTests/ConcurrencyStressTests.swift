//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierTestSupport
import NIOCore
import Synchronization
import Testing

@testable import CourierCore

/// Adversarial interleavings of the concurrency primitives: many tasks, cancellation at every await point, and an
/// end (delivery, shutdown) while waiters exist. Each test is bounded: a hang fails it instead of blocking.
@Suite struct ConcurrencyStressTests {
    final class Counter: Sendable {
        let value = Atomic(0)
    }

    /// Runs `body` with CourierTestSupport's ``finish(within:_:_:)``: a hang fails the test instead of blocking it.
    /// The limit is generous: one round of the semaphore test passed 10 s once, in a CI run with every suite running
    /// at once and heavy tests beside it; it takes milliseconds alone.
    static func within<T: Sendable>(
        _ limit: Duration = .seconds(30),
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await finish(within: limit, "the stress round", body)
    }

    // MARK: AsyncSemaphore

    @Test func semaphorePermitsAreNeitherLostNorDuplicatedUnderCancellation() async throws {
        for round in 0..<8 {
            let permits = 1 + round % 4
            let semaphore = AsyncSemaphore(permits: permits)
            let holding = Counter()
            let overflow = Counter()
            try await Self.within {
                await withTaskGroup(of: Void.self) { group in
                    var tasks: [Task<Void, Never>] = []
                    for index in 0..<200 {
                        let task = Task {
                            if index % 7 == 0 { withUnsafeCurrentTask { $0?.cancel() } }
                            guard await semaphore.acquire() else { return }
                            if holding.value.add(1, ordering: .relaxed).newValue > permits {
                                overflow.value.add(1, ordering: .relaxed)
                            }
                            if index % 3 == 0 { await Task.yield() }
                            holding.value.subtract(1, ordering: .relaxed)
                            semaphore.release()
                        }
                        tasks.append(task)
                        if index % 5 == 0 { task.cancel() }
                    }
                    for task in tasks { group.addTask { await task.value } }
                    // Cancel the rest at random points while they wait.
                    for task in tasks.shuffled().prefix(50) {
                        task.cancel()
                        await Task.yield()
                    }
                }
            }
            #expect(overflow.value.load(ordering: .relaxed) == 0)
            #expect(semaphore.availablePermits == permits, "round \(round)")
        }
    }

    // MARK: OneShot

    @Test func oneShotWakesEveryWaiterWhateverTheOrder() async throws {
        for _ in 0..<200 {
            let shot = OneShot<Int>()
            let total = try await Self.within {
                await withTaskGroup(of: Int.self) { group in
                    for _ in 0..<8 { group.addTask { await shot.value } }
                    group.addTask {
                        await Task.yield()
                        shot.deliver(1)
                        shot.deliver(2)
                        return 1
                    }
                    for _ in 0..<8 { group.addTask { await shot.value } }
                    return await group.reduce(0, +)
                }
            }
            #expect(total == 17)
        }
    }

    // MARK: ReplyCorrelator

    /// Calls that end every way at once (reply, timeout, cancellation, failure, shutdown) all end, each once.
    @Test func correlatorCallsAllEndUnderRandomOutcomes() async throws {
        for round in 0..<5 {
            let correlator = ReplyCorrelator()
            let count = 400
            let outcomes = try await Self.within {
                try await withThrowingTaskGroup(of: Int.self) { group in
                    var tasks: [Task<Int, Never>] = []
                    for index in 0..<count {
                        let id = "r\(round)-\(String(index, radix: 16))"
                        let task = Task {
                            do {
                                _ = try await correlator.awaitReply(
                                    id: id, pattern: "p", timeout: .milliseconds(1 + index % 40)
                                ) {}
                                return 1
                            } catch {
                                return 1
                            }
                        }
                        tasks.append(task)
                        switch index % 5 {
                        case 0: task.cancel()
                        case 1: correlator.receive(WireReply(correlationID: id, response: ByteBuffer(string: "1"),
                                                             isDisposed: true))
                        case 2: correlator.fail(correlationID: id, with: .unavailable("lost"))
                        default: break
                        }
                    }
                    for (index, task) in tasks.enumerated() {
                        if index % 5 == 3 { task.cancel() }
                        group.addTask { await task.value }
                    }
                    if round % 2 == 0 { correlator.shutdown() }
                    return try await group.reduce(0, +)
                }
            }
            #expect(outcomes == count)
            #expect(correlator.pendingCount == 0)
        }
    }

    @Test func streamsEndWhenTheirConsumerStopsOrTheyTimeOut() async throws {
        let correlator = ReplyCorrelator()
        let released = Counter()
        try await Self.within {
            await withTaskGroup(of: Void.self) { group in
                for index in 0..<300 {
                    let id = "s\(String(index, radix: 16))"
                    let stream = correlator.openStream(id: id, pattern: "p", timeout: .milliseconds(20 + index % 30),
                                                       idleTimeout: index % 2 == 0 ? .milliseconds(10) : nil) {
                        released.value.add(1, ordering: .relaxed)
                    }
                    group.addTask {
                        do {
                            for try await _ in stream where index % 3 == 0 { break }
                        } catch {}
                    }
                    if index % 3 == 1 {
                        correlator.receive(WireReply(correlationID: id, response: ByteBuffer(string: "1"),
                                                     isDisposed: false))
                    }
                }
            }
        }
        #expect(correlator.pendingCount == 0)
    }

    @Test func aStreamDroppedWithoutIterationIsForgotten() async throws {
        let correlator = ReplyCorrelator()
        let released = Counter()
        do {
            let stream = correlator.openStream(id: "x", pattern: "p", timeout: .seconds(30)) {
                released.value.add(1, ordering: .relaxed)
            }
            _ = stream
        }
        #expect(correlator.pendingCount == 0)
        #expect(released.value.load(ordering: .relaxed) == 1)
    }

    // MARK: LazyConnection

    /// Callers and a close racing: at most one connection is opened, and close hands back any that was.
    @Test func lazyConnectionNeverLeaksAConnectionToAConcurrentClose() async throws {
        for round in 0..<200 {
            let connection = LazyConnection<Int>(closedMessage: "closed")
            let opened = Counter()
            let results = try await Self.within {
                await withTaskGroup(of: Int?.self) { group in
                    for caller in 0..<8 {
                        group.addTask {
                            try? await connection.get {
                                if caller % 3 == round % 3 { await Task.yield() }
                                return opened.value.add(1, ordering: .relaxed).newValue
                            }
                        }
                    }
                    group.addTask {
                        for _ in 0..<(round % 5) { await Task.yield() }
                        return await connection.close().map { -$0 }
                    }
                    return await group.reduce(into: [Int?]()) { $0.append($1) }
                }
            }
            let count = opened.value.load(ordering: .relaxed)
            let closed = results.compactMap { $0 }.filter { $0 < 0 }
            #expect(count <= 1, "round \(round)")
            #expect(closed.count == count, "round \(round): opened \(count), close returned \(closed)")
        }
    }
}
