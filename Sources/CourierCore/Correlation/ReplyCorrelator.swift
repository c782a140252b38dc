//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// Where a client transport hands the replies it receives, and reports calls it could not deliver.
public protocol ReplyReceiver: Sendable {
    /// A reply packet arrived. Unknown correlation ids (late or foreign replies) are dropped.
    func receive(_ reply: WireReply)
    /// The given calls cannot get replies any more (their connection dropped, their request was not delivered).
    func fail(correlationIDs: some Sequence<String>, with error: CourierError)
}

/// Matches replies to pending calls by correlation id and enforces deadlines, for every transport alike.
///
/// One instance serves one client. Its pending calls are split into shards, each with its own lock and a single
/// deadline timer armed at the shard's earliest pending deadline, so the cost of timeouts does not grow with the
/// number of calls in flight.
public final class ReplyCorrelator: ReplyReceiver, Sendable {
    enum Sink: Sendable {
        // Unsafe: the state machine hands each entry's sink out exactly once (delivery, failure, timeout or
        // cancellation), which is what the checked variant would verify at a cost per call.
        case single(UnsafeContinuation<ByteBuffer?, any Error>)
        /// Boxed: a stream continuation's layout is not known outside the standard library, which made every copy
        /// of a sink (and of the correlation table's entries) go through runtime value witnesses, on every call.
        case stream(StreamBox)

        final class StreamBox: Sendable {
            let continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation
            init(_ continuation: AsyncThrowingStream<ByteBuffer, any Error>.Continuation) {
                self.continuation = continuation
            }
        }

        func deliver(_ value: ByteBuffer) {
            switch self {
            case .single(let continuation): continuation.resume(returning: value)
            case .stream(let box): box.continuation.yield(value)
            }
        }

        func complete(_ value: ByteBuffer?) {
            switch self {
            case .single(let continuation): continuation.resume(returning: value)
            case .stream(let box):
                if let value { box.continuation.yield(value) }
                box.continuation.finish()
            }
        }

        func fail(_ error: CourierError) {
            switch self {
            case .single(let continuation): continuation.resume(throwing: error)
            case .stream(let box): box.continuation.finish(throwing: error)
            }
        }
    }

    /// The pending calls, split by the last byte of their correlation id: callers register from many threads
    /// while the transport delivers replies from its event loop, and with one lock they contended for it (5 % of a
    /// TCP client's CPU with 64 calls in flight). Courier's ids end in a hex digit of a counter, so consecutive
    /// calls land in different shards.
    private let shards: [Shard]

    /// A correlator with no pending calls.
    public init() {
        shards = (0..<Self.shardCount).map { _ in Shard() }
    }

    static let shardCount = 16

    private static func shardIndex(for id: String) -> Int {
        Int(id.utf8.last ?? 0) & (shardCount - 1)
    }

    private func shard(for id: String) -> Shard {
        shards[Self.shardIndex(for: id)]
    }

    /// The number of calls awaiting replies.
    public var pendingCount: Int { shards.reduce(0) { $0 + $1.pendingCount } }

    /// Registers a call expecting one reply, runs `send` (which must not suspend), and waits for the reply.
    ///
    /// - Returns: The raw JSON of the reply value, or `nil` when the handler replied with no value.
    /// - Throws: ``CourierError`` on timeout, cancellation, remote error or transport failure.
    public func awaitReply(
        id: String,
        pattern: String,
        timeout: Duration,
        extensionLimit: NIODeadline? = nil,
        send: () -> Void
    ) async throws -> ByteBuffer? {
        let deadline = NIODeadline.now() + TimeAmount.nanoseconds(timeout.nanosecondCount)
        let shard = shard(for: id)
        // Whether this call's entry is in the table (1), or the cancellation handler ran before it was (2): the
        // handler must not forget an entry of the same id that another call holds (this one's registration refused
        // as a duplicate, or not made yet), so whichever of the two comes second forgets this call's entry.
        let registration = Atomic<Int>(0)
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { continuation in
                guard shard.register(id: id, pattern: pattern, mode: .single, deadline: deadline,
                                     extensionLimit: extensionLimit, sink: .single(continuation)) else { return }
                let (registered, _) = registration.compareExchange(expected: 0, desired: 1,
                                                                   ordering: .acquiringAndReleasing)
                if !registered || Task.isCancelled {
                    shard.cancel(id: id)
                    return
                }
                send()
            }
        } onCancel: {
            let (first, _) = registration.compareExchange(expected: 0, desired: 2, ordering: .acquiringAndReleasing)
            if !first { shard.cancel(id: id) }
        }
    }

    /// Registers a call expecting a stream of replies and returns the stream of raw reply values.
    ///
    /// The caller must run `send` after this returns. The stream ends on the end-of-stream marker; it throws on
    /// error or timeout; when the consumer stops iterating, the call is forgotten. `onRelease` runs when the caller
    /// stops waiting before the end-of-stream marker (it stopped iterating, or the stream failed: timeout, error,
    /// lost connection), so that the transport can forget the id too. With an `idleTimeout`, the stream also
    /// times out when that long passes without an element (or a deadline extension) after the previous one.
    public func openStream(
        id: String,
        pattern: String,
        timeout: Duration,
        idleTimeout: Duration? = nil,
        extensionLimit: NIODeadline? = nil,
        onRelease: @escaping @Sendable () -> Void
    ) -> AsyncThrowingStream<ByteBuffer, any Error> {
        let deadline = NIODeadline.now() + TimeAmount.nanoseconds(timeout.nanosecondCount)
        let (stream, continuation) = AsyncThrowingStream<ByteBuffer, any Error>.makeStream()
        let shard = shard(for: id)
        continuation.onTermination = { [weak shard] termination in
            switch termination {
            case .cancelled:
                if let shard, shard.forget(id: id) { onRelease() }
            case .finished(let error):
                if error != nil { onRelease() }
            @unknown default:
                break
            }
        }
        _ = shard.register(id: id, pattern: pattern, mode: .stream, deadline: deadline,
                           idleTimeout: idleTimeout.map { TimeAmount.nanoseconds($0.nanosecondCount) },
                           extensionLimit: extensionLimit, sink: .stream(Sink.StreamBox(continuation)))
        return stream
    }

    public func receive(_ reply: WireReply) {
        shard(for: reply.correlationID).receive(reply)
    }

    public func fail(correlationIDs: some Sequence<String>, with error: CourierError) {
        var byShard = [[String]](repeating: [], count: Self.shardCount)
        for id in correlationIDs { byShard[Self.shardIndex(for: id)].append(id) }
        for (index, ids) in byShard.enumerated() where !ids.isEmpty { shards[index].fail(ids: ids, with: error) }
    }

    /// Fails one call now, if it is still pending (for example because its request could not be sent).
    public func fail(correlationID: String, with error: CourierError) {
        shard(for: correlationID).fail(ids: [correlationID], with: error)
    }

    /// Fails every pending call and refuses new ones.
    public func shutdown(error: CourierError = .unavailable("the client is shut down")) {
        for shard in shards { shard.shutdown(error: error) }
    }

    // MARK: Internals

    /// A share of the pending calls, with its own lock and deadline timer.
    private final class Shard: Sendable {
        private struct State: ~Copyable {
            var machine = CorrelationStateMachine<Sink>()
            var timer: Task<Void, Never>?
        }

        private let state = Mutex(State())

        var pendingCount: Int { state.withLock { $0.machine.pendingCount } }

        func register(
            id: String,
            pattern: String,
            mode: CorrelationStateMachine<Sink>.Mode,
            deadline: NIODeadline,
            idleTimeout: TimeAmount? = nil,
            extensionLimit: NIODeadline? = nil,
            sink: Sink
        ) -> Bool {
            let action = state.withLock {
                $0.machine.register(id: id, pattern: pattern, mode: mode, deadline: deadline, idleTimeout: idleTimeout,
                                    extensionLimit: extensionLimit, sink: sink)
            }
            switch action {
            case .none:
                return true
            case .armTimer(let at):
                arm(at: at)
                return true
            case .reject(let sink, let error):
                sink.fail(error)
                return false
            }
        }

        func receive(_ reply: WireReply) {
            let action = state.withLock { $0.machine.receive(reply, now: .now()) }
            switch action {
            case .drop, .extended: break
            case .deliver(let sink, let value): sink.deliver(value)
            case .complete(let sink, let value): sink.complete(value)
            case .fail(let sink, let error): sink.fail(error)
            }
        }

        func fail(ids: [String], with error: CourierError) {
            let sinks = state.withLock { state in state.machine.fail(ids: ids).map(\.sink) }
            for sink in sinks { sink.fail(error) }
        }

        func shutdown(error: CourierError) {
            let (sinks, timer) = state.withLock { state -> ([Sink], Task<Void, Never>?) in
                let sinks = state.machine.shutdown().map(\.sink)
                let timer = state.timer
                state.timer = nil
                return (sinks, timer)
            }
            timer?.cancel()
            for sink in sinks { sink.fail(error) }
        }

        /// Removes a call; returns whether it was still pending.
        @discardableResult
        func forget(id: String) -> Bool {
            state.withLock { state in state.machine.cancel(id: id) != nil }
        }

        func cancel(id: String) {
            let cancelled = state.withLock { state -> (Sink, String)? in
                state.machine.cancel(id: id).map { ($0.sink, $0.pattern) }
            }
            guard let (sink, pattern) = cancelled else { return }
            sink.fail(.cancelled(pattern))
        }

        private func arm(at deadline: NIODeadline) {
            let task = Task { [weak self] in
                let delay = deadline - .now()
                if delay > .zero {
                    try? await Task.sleep(for: .nanoseconds(delay.nanoseconds))
                }
                if Task.isCancelled { return }
                self?.timerFired()
            }
            // Only the timer for the current earliest deadline may stay armed; a racing, later arm loses.
            let installed = state.withLock { state -> (Bool, Task<Void, Never>?) in
                guard state.machine.armedDeadline == deadline else { return (false, nil) }
                let previous = state.timer
                state.timer = task
                return (true, previous)
            }
            if !installed.0 { task.cancel() }
            installed.1?.cancel()
        }

        private func timerFired() {
            let (expired, next) = state.withLock { state -> ([CorrelationStateMachine<Sink>.Entry], NIODeadline?) in
                state.machine.timerFired(now: .now())
            }
            for entry in expired { entry.sink.fail(entry.expiryError) }
            if let next { arm(at: next) }
        }
    }
}
