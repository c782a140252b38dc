//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// The answers to a pipelined batch of events (one `PUBLISH` or `XADD` each).
enum RedisBatchAnswers {
    /// Waits for every answer, in order; throws ``CourierCore/CourierError/batch(_:count:failures:firstUnsent:)``
    /// naming every event whose command failed (Redis's error answer, or the connection's failure), so that one
    /// failure neither hides the others nor leaves the caller guessing which events Redis took.
    static func wait(for answers: [EventLoopFuture<RESPValue>], pattern: String) async throws {
        var failures: [(index: Int, error: any Error)] = []
        for (index, answer) in answers.enumerated() {
            do {
                _ = try await answer.get()
            } catch {
                failures.append((index, failure(error)))
            }
        }
        guard failures.isEmpty else {
            throw CourierError.batch(pattern, count: answers.count, failures: failures)
        }
    }

    /// The error of one event's command: the connection's own, or Redis's error answer as
    /// ``CourierCore/CourierError/Code/transportUnavailable``.
    static func failure(_ error: any Error) -> CourierError {
        CourierError.wrapping(error, as: .transportUnavailable, "Redis refused it")
    }
}
