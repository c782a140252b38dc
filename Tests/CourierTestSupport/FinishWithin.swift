//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Synchronization

/// A test's step that took longer than its limit.
public struct TimedOut: Error, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

/// Runs `body`, throwing ``TimedOut`` (naming `what`) if it has not finished within `limit`. `body` need not react to
/// cancellation: it is cancelled, and left behind, when the limit passes, so a hang fails the test instead of
/// blocking it (a task group would wait for it; a stuck continuation ignores cancellation).
public func finish<T: Sendable>(
    within limit: Duration,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let once = Once()
    let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, any Error>?, Never>) in
        let work = Task {
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            if once.take() { continuation.resume(returning: result) }
        }
        Task {
            try? await Task.sleep(for: limit)
            if once.take() {
                work.cancel()
                continuation.resume(returning: nil)
            }
        }
    }
    guard let outcome else { throw TimedOut(description: "\(what) took longer than \(limit)") }
    return try outcome.get()
}

/// Lets only the first of several racing parties through.
private final class Once: Sendable {
    private let taken = Atomic<Bool>(false)
    func take() -> Bool { taken.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged }
}
