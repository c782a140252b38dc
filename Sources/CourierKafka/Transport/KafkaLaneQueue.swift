//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// An unbounded queue with one reader task: what a worker's partition lane reads its records from, and what its
/// acknowledger reads pending records from.
///
/// It replaces `AsyncStream`, whose generic code is not specialized outside the standard library: measured on the
/// event path, its `yield` and `next` spent most of their time looking up generic metadata (27 % of a worker's CPU
/// for two streams per record). Bounding is the worker's job (its record budget), so `push` never waits.
final class KafkaLaneQueue<Element: Sendable>: Sendable {
    private struct State {
        var buffer = CircularBuffer<Element>(initialCapacity: 16)
        var reader: UnsafeContinuation<Element?, Never>?
        var finished = false
    }

    private let state = Mutex(State())

    /// Appends `element`, or hands it straight to a waiting reader. Ignored after ``finish()``.
    func push(_ element: Element) {
        let reader = state.withLock { state -> UnsafeContinuation<Element?, Never>? in
            guard !state.finished else { return nil }
            if let reader = state.reader {
                state.reader = nil
                return reader
            }
            state.buffer.append(element)
            return nil
        }
        reader?.resume(returning: element)
    }

    /// Ends the queue: the reader gets what is buffered, then `nil`.
    func finish() {
        let reader = state.withLock { state -> UnsafeContinuation<Element?, Never>? in
            state.finished = true
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume(returning: nil)
    }

    /// Whether ``finish()`` was called.
    var isFinished: Bool {
        state.withLock { $0.finished }
    }

    /// The next element if one is buffered; never waits (nil also once finished).
    func nextIfBuffered() -> Element? {
        state.withLock { $0.buffer.popFirst() }
    }

    /// The next element, waiting for one; `nil` once the queue is finished and drained. One reader at a time.
    ///
    /// A cancelled reader is not woken: the lanes end by ``finish()``, which every owner calls.
    func next() async -> Element? {
        let buffered = state.withLock { state -> Element?? in
            if let element = state.buffer.popFirst() { return .some(element) }
            return state.finished ? .some(nil) : .none
        }
        if case .some(let element) = buffered { return element }
        return await withUnsafeContinuation { continuation in
            let ready = state.withLock { state -> Element?? in
                if let element = state.buffer.popFirst() { return .some(element) }
                if state.finished { return .some(nil) }
                precondition(state.reader == nil, "KafkaLaneQueue has one reader")
                state.reader = continuation
                return .none
            }
            if case .some(let element) = ready { continuation.resume(returning: element) }
        }
    }
}
