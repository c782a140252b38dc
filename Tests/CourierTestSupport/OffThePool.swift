//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation
import Testing

// Swift concurrency's pool has one thread per core (two on CI). The suites run in parallel on it, and every
// timeout in them is a job on it: a test that holds a pool thread (by blocking, or by computing for seconds
// without suspending) delays every deadline of every other test. These helpers keep such work off the pool.

/// Runs blocking work (process waits, pipe reads, blocking C calls) on a thread of its own and returns its result.
///
/// Processes started there get a signal mask that lets SIGTERM through, unlike children of Swift concurrency's
/// threads.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs a test on a thread outside Swift concurrency's pool, shared by every test with this trait: for tests that
/// compute for seconds without suspending (fuzzing, exhaustive splits), which would otherwise hold a pool thread
/// and hold up other tests' timers meanwhile.
///
/// The test's tasks (its child tasks and the unstructured tasks it starts) prefer that thread. Sharing one thread
/// means these tests compute one at a time (they interleave only where they suspend), beside the pool rather than
/// on it; the thread is never stopped, so a task a test left behind still has somewhere to run.
public struct CPUBoundTrait: TestTrait, SuiteTrait, TestScoping {
    public var isRecursive: Bool { true }

    @concurrent public func provideScope(
        for test: Test,
        testCase: Test.Case?,
        performing function: @Sendable @concurrent () async throws -> Void
    ) async throws {
        try await withTaskExecutorPreference(SharedThreadExecutor.cpuBound) { try await function() }
    }
}

extension Trait where Self == CPUBoundTrait {
    /// Runs the test outside Swift concurrency's pool; see ``CPUBoundTrait``.
    public static var cpuBound: Self { Self() }
}

/// A task executor running its jobs one at a time on one thread of its own, which lives as long as the process.
final class SharedThreadExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: `jobs` is only touched while `condition` is locked.
    static let cpuBound = SharedThreadExecutor(name: "cpu-bound-tests")

    private var jobs: [UnownedJob] = []
    private let condition = NSCondition()

    private init(name: String) {
        let thread = Thread { [unowned(unsafe) self] in self.run() }
        thread.name = name
        thread.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func run() -> Never {
        while true {
            condition.lock()
            while jobs.isEmpty { condition.wait() }
            let batch = jobs
            jobs.removeAll(keepingCapacity: true)
            condition.unlock()
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
