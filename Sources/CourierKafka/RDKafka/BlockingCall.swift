//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation

/// Runs a librdkafka call that blocks (a metadata request, a mock-cluster command waiting for the mock's thread) on
/// a short-lived thread of its own, and suspends the calling task until it returns.
///
/// Swift concurrency's pool has one thread per core: a blocking call on it stalls every task of the process (timers
/// included) for as long as it blocks. These calls are rare, so a thread each costs less than it saves.
enum BlockingCall {
    /// Runs `body` on a new thread named `name` and returns or throws what it does.
    static func run<Value: Sendable>(
        _ name: String,
        _ body: @escaping @Sendable () throws -> Value
    ) async throws -> Value {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.name = name
            thread.start()
        }
    }
}
