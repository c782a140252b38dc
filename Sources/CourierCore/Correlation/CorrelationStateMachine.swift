//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The pure bookkeeping behind every call awaiting replies: which correlation ids are pending, their deadlines,
/// whether they expect one reply or a stream, and what each incoming packet means.
///
/// It performs no I/O and holds no clock: callers pass `now` and carry out the returned actions, so every
/// transition (timeouts, late replies, stream end, cancellation, deadline extension) is unit-testable.
/// `Sink` is whatever the caller resumes (a continuation in production, a marker in tests).
struct CorrelationStateMachine<Sink> {
    enum Mode: Sendable {
        /// `send`: the first value (or error, or end) completes the call.
        case single
        /// `sendStream`: values are delivered until the end-of-stream marker or an error.
        case stream
    }

    struct Entry {
        var mode: Mode
        var pattern: String
        /// The call's deadline (the caller's timeout, moved later by the handler's extensions).
        var deadline: NIODeadline
        /// The latest the deadline may be extended to (an onward call's calling handler's deadline); `nil`: no limit.
        var extensionLimit: NIODeadline? = nil
        var sink: Sink
        /// For a stream with an idle timeout: how long it may wait for its next packet, and until when it waits for
        /// the next one now.
        var idle: (timeout: TimeAmount, until: NIODeadline)?

        /// When the call times out: its deadline, or earlier its idle deadline.
        var expiresAt: NIODeadline { idle.map { min($0.until, deadline) } ?? deadline }

        /// Whether the call expired for want of a packet within its idle timeout, before its deadline.
        var idledOut: Bool { idle.map { $0.until < deadline } ?? false }

        /// The error an expired call fails with: its idle timeout's, or its deadline's.
        var expiryError: CourierError {
            guard idledOut, let idle else { return .timedOut(pattern) }
            return .idleTimedOut(pattern, after: .nanoseconds(idle.timeout.nanoseconds))
        }
    }

    enum RegisterAction {
        /// Registered; nothing else to do.
        case none
        /// Registered, and the deadline timer must fire at this instant (it is the new earliest deadline).
        case armTimer(NIODeadline)
        /// Refused: the correlator is shut down or the id is already pending.
        case reject(Sink, CourierError)
    }

    enum ReceiveAction {
        /// Unknown id (a late reply after a timeout, or one meant for another client): drop it quietly.
        case drop
        /// A stream element; the call goes on.
        case deliver(Sink, ByteBuffer)
        /// The call ends successfully, with a last value when the packet carried one.
        case complete(Sink, ByteBuffer?)
        /// The call ends with an error.
        case fail(Sink, CourierError)
        /// The deadline moved; nothing to deliver.
        case extended
    }

    private(set) var entries: [String: Entry] = [:]
    /// When the single deadline timer is set to fire, if it is armed.
    private(set) var armedDeadline: NIODeadline?
    private(set) var isShutdown = false

    var pendingCount: Int { entries.count }

    /// Registers a call. A stream with an `idleTimeout` also times out when that long passes without a packet
    /// for it (from `now`, then from each element or extension).
    mutating func register(
        id: String,
        pattern: String,
        mode: Mode,
        deadline: NIODeadline,
        idleTimeout: TimeAmount? = nil,
        extensionLimit: NIODeadline? = nil,
        now: NIODeadline? = nil,
        sink: Sink
    ) -> RegisterAction {
        if isShutdown {
            return .reject(sink, .unavailable("the client is shut down"))
        }
        var entry = Entry(mode: mode, pattern: pattern, deadline: deadline, extensionLimit: extensionLimit, sink: sink)
        // The clock is read only for an idle timeout (`now` is for tests).
        if let idleTimeout { entry.idle = (idleTimeout, (now ?? .now()) + idleTimeout) }
        let expiresAt = entry.expiresAt
        // One hash of the id in the usual case; a duplicate (never one of Courier's own ids) is put back.
        if let pending = entries.updateValue(entry, forKey: id) {
            entries[id] = pending
            return .reject(sink, CourierError(.unprocessable, "correlation id '\(id)' is already pending"))
        }
        if let armed = armedDeadline, armed <= expiresAt { return .none }
        armedDeadline = expiresAt
        return .armTimer(expiresAt)
    }

    mutating func receive(_ reply: WireReply, now: NIODeadline) -> ReceiveAction {
        // Found by index, so that removing or updating the entry does not hash its id again.
        guard let index = entries.index(forKey: reply.correlationID) else { return .drop }
        let entry = entries.values[index]
        if let error = reply.error {
            entries.remove(at: index)
            return .fail(entry.sink, WireReply.callerError(from: error))
        }
        if reply.isDisposed {
            entries.remove(at: index)
            return .complete(entry.sink, reply.response)
        }
        if let response = reply.response {
            switch entry.mode {
            case .single:
                entries.remove(at: index)
                return .complete(entry.sink, response)
            case .stream:
                // Only moves later: the armed timer, set for an earlier instant, finds it when it fires.
                if let idle = entry.idle { entries.values[index].idle = (idle.timeout, now + idle.timeout) }
                return .deliver(entry.sink, response)
            }
        }
        if let extra = reply.extendDeadline {
            var proposed = now + TimeAmount.nanoseconds(extra.nanosecondCount)
            if let limit = entry.extensionLimit { proposed = min(proposed, limit) }
            if proposed > entry.deadline {
                entries.values[index].deadline = proposed
            }
            if let idle = entry.idle { entries.values[index].idle = (idle.timeout, now + idle.timeout) }
            return .extended
        }
        // A packet with nothing in it: NestJS would deliver `undefined`; Courier ignores it.
        return .drop
    }

    /// The caller stopped waiting (task cancelled, stream iteration ended): forget the call.
    mutating func cancel(id: String) -> Entry? {
        entries.removeValue(forKey: id)
    }

    /// Fails the given calls (their connection was lost).
    mutating func fail(ids: some Sequence<String>) -> [Entry] {
        ids.compactMap { entries.removeValue(forKey: $0) }
    }

    /// The deadline timer fired: returns the expired calls and when to fire next.
    mutating func timerFired(now: NIODeadline) -> (expired: [Entry], nextDeadline: NIODeadline?) {
        var expired: [Entry] = []
        var earliest: NIODeadline?
        for (id, entry) in entries {
            let expiresAt = entry.expiresAt
            if expiresAt <= now {
                expired.append(entry)
                entries[id] = nil
            } else if earliest.map({ expiresAt < $0 }) ?? true {
                earliest = expiresAt
            }
        }
        armedDeadline = earliest
        return (expired, earliest)
    }

    /// Shuts down: every pending call is returned to be failed, and later registrations are refused.
    mutating func shutdown() -> [Entry] {
        isShutdown = true
        armedDeadline = nil
        let all = Array(entries.values)
        entries.removeAll()
        return all
    }
}

extension Duration {
    /// The duration in whole nanoseconds, saturating.
    package var nanosecondCount: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return scaled.addingReportingOverflow(attoseconds / 1_000_000_000).overflow
            ? .max : scaled + attoseconds / 1_000_000_000
    }
}
