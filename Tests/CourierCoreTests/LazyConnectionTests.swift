//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization
import Testing

@testable import CourierCore

/// One connection shared by concurrent callers, retried after a failed attempt.
@Suite struct LazyConnectionTests {
    struct Refused: Error {}

    final class Opener: Sendable {
        let opened = Atomic(0)
        let attempts = Atomic(0)

        /// The first attempt fails, every later one opens a connection (its number).
        func open() async throws -> Int {
            let attempt = attempts.add(1, ordering: .relaxed).newValue
            await Task.yield()
            if attempt == 1 { throw Refused() }
            return opened.add(1, ordering: .relaxed).newValue
        }
    }

    @Test func concurrentCallersShareOneAttempt() async throws {
        let connection = LazyConnection<Int>(closedMessage: "closed")
        let opener = Opener()
        _ = try? await connection.get { try await opener.open() }  // the failed attempt
        let numbers = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<16 { group.addTask { try await connection.get { try await opener.open() } } }
            return try await group.reduce(into: Set<Int>()) { $0.insert($1) }
        }
        #expect(numbers == [1])
        #expect(opener.opened.load(ordering: .relaxed) == 1)
    }

    /// Callers still waking from a failed attempt while others already retry: every connection opened is the
    /// shared one (a stale caller that reset the newer attempt made a third one start, which nobody closed).
    @Test func aFailedAttemptsLateCallersDoNotResetTheNextAttempt() async throws {
        for _ in 0..<200 {
            let connection = LazyConnection<Int>(closedMessage: "closed")
            let opener = Opener()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        for _ in 0..<3 {
                            if (try? await connection.get { try await opener.open() }) != nil { break }
                        }
                    }
                }
            }
            #expect(opener.opened.load(ordering: .relaxed) == 1, "connections opened: \(opener.opened.load(ordering: .relaxed))")
            #expect(await connection.close() == 1)
        }
    }

    @Test func closedForGood() async throws {
        let connection = LazyConnection<Int>(closedMessage: "gone")
        #expect(try await connection.get { 5 } == 5)
        #expect(await connection.close() == 5)
        let error = await #expect(throws: CourierError.self) { try await connection.get { 6 } }
        #expect(error?.message == "gone")
    }
}
