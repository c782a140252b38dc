//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Histogram
import NIOCore
import Synchronization

/// One side of a benchmark comparison: Courier on a transport, or the raw client doing the same round trip over the
/// same socket or library code without Courier.
///
/// The harness times every workload itself; a subject only does the work and counts it.
protocol BenchSubject: Sendable {
    /// Makes request/reply round trips from `inFlight` concurrent callers until `deadline`, adding each completed
    /// round trip to `counter`. With `latencies` (the harness passes it with `inFlight == 1` only), records each
    /// round trip's duration.
    func roundTrips(
        inFlight: Int,
        until deadline: ContinuousClock.Instant,
        counter: BenchCounter,
        latencies: LatencyRecorder?
    ) async throws

    /// Sends `count` one-way events and returns once the receiving side has handled all of them (Courier: the
    /// worker counted them; raw: the consumer received them). Adds each handled event to `counter` when it can
    /// see them, so the progress line moves.
    func events(count: Int, counter: BenchCounter) async throws

    /// Receives streamed reply elements until `deadline`, adding each to `counter`; false if the subject has no
    /// streamed replies (the raw baselines).
    func streamedElements(until deadline: ContinuousClock.Instant, counter: BenchCounter) async throws -> Bool

    /// Closes connections; the harness stops the processes it started.
    func shutdown() async
}

extension BenchSubject {
    func streamedElements(until deadline: ContinuousClock.Instant, counter: BenchCounter) async throws -> Bool {
        false
    }

    /// Polls `currentCount` every 5 ms until it reaches `target`, adding the progress to `counter`.
    func waitUntilCounted(
        _ target: Int,
        from start: Int,
        counter: BenchCounter,
        currentCount: () async throws -> Int
    ) async throws {
        var seen = start
        while seen < target {
            try await Task.sleep(for: .milliseconds(5))
            let now = try await currentCount()
            counter.add(now - seen)
            seen = now
        }
    }
}

/// A subject whose round trip is one async call; `inFlight` tasks each call it in a loop.
protocol CallingBenchSubject: BenchSubject {
    /// One request/reply round trip.
    func roundTrip() async throws
}

extension CallingBenchSubject {
    func roundTrips(
        inFlight: Int,
        until deadline: ContinuousClock.Instant,
        counter: BenchCounter,
        latencies: LatencyRecorder?
    ) async throws {
        try await callInLoops(inFlight: inFlight, until: deadline, counter: counter, latencies: latencies) {
            try await self.roundTrip()
        }
    }

    /// The driver: `inFlight` tasks, each calling in a loop.
    func callInLoops(
        inFlight: Int,
        until deadline: ContinuousClock.Instant,
        counter: BenchCounter,
        latencies: LatencyRecorder?,
        _ call: @escaping @Sendable () async throws -> Void
    ) async throws {
        let clock = ContinuousClock()
        try await withThrowingDiscardingTaskGroup { group in
            for _ in 0..<inFlight {
                group.addTask {
                    while clock.now < deadline {
                        if let latencies {
                            let start = clock.now
                            try await call()
                            latencies.record(start.duration(to: clock.now))
                        } else {
                            try await call()
                        }
                        counter.add()
                    }
                }
            }
        }
    }
}

/// Counts completed operations while a step runs; the progress line reads it.
final class BenchCounter: Sendable {
    private let value = Atomic<Int>(0)

    func add(_ amount: Int = 1) { value.add(amount, ordering: .relaxed) }

    var count: Int { value.load(ordering: .relaxed) }
}

/// Round-trip durations in nanoseconds, in an HDR histogram (1 µs … 60 s at 3 significant digits).
final class LatencyRecorder: Sendable {
    private let histogram = Mutex(Histogram<UInt64>(lowestDiscernibleValue: 1_000, highestTrackableValue: 60_000_000_000,
                                                     numberOfSignificantValueDigits: .three))

    func record(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
        histogram.withLock { _ = $0.record(UInt64(min(nanoseconds, 60_000_000_000))) }
    }

    /// A copy of what was recorded.
    var snapshot: Histogram<UInt64> { histogram.withLock { $0 } }
}

/// The raw clients' calls waiting for replies, by the integer id each request carries.
final class PendingReplies: Sendable {
    private let promises = Mutex<[Int: EventLoopPromise<ByteBuffer>]>([:])
    private let nextID = Atomic<Int>(0)

    /// Registers a new call; returns its id and the future of its reply.
    func register(on eventLoop: any EventLoop) -> (id: Int, reply: EventLoopFuture<ByteBuffer>) {
        let id = nextID.add(1, ordering: .relaxed).newValue
        let promise = eventLoop.makePromise(of: ByteBuffer.self)
        promises.withLock { $0[id] = promise }
        return (id, promise.futureResult)
    }

    func complete(_ id: Int, with reply: ByteBuffer) {
        promises.withLock { $0.removeValue(forKey: id) }?.succeed(reply)
    }

    func fail(_ id: Int, _ error: any Error) {
        promises.withLock { $0.removeValue(forKey: id) }?.fail(error)
    }

    func failAll(_ error: any Error) {
        let all = promises.withLock { promises in
            defer { promises.removeAll() }
            return Array(promises.values)
        }
        for promise in all { promise.fail(error) }
    }
}
