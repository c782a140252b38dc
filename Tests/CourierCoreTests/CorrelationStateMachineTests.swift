//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

@testable import CourierCore
import NIOCore
import Testing

@Suite struct CorrelationStateMachineTests {
    typealias Machine = CorrelationStateMachine<Int>

    /// A fixed origin, so every deadline in these tests is explicit.
    static let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

    static func at(_ milliseconds: Int64) -> NIODeadline { t0 + .milliseconds(milliseconds) }

    static func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    // MARK: Helpers turning actions into comparable values

    enum Registered: Equatable {
        case none
        case armTimer(NIODeadline)
        case reject(Int, CourierError.Code)
    }

    enum Received: Equatable {
        case drop
        case deliver(Int, String)
        case complete(Int, String?)
        case fail(Int, CourierError.Code, String)
        case extended
    }

    static func describe(_ action: Machine.RegisterAction) -> Registered {
        switch action {
        case .none: .none
        case .armTimer(let deadline): .armTimer(deadline)
        case .reject(let sink, let error): .reject(sink, error.code)
        }
    }

    static func describe(_ action: Machine.ReceiveAction) -> Received {
        switch action {
        case .drop: .drop
        case .deliver(let sink, let value): .deliver(sink, String(buffer: value))
        case .complete(let sink, let value): .complete(sink, value.map { String(buffer: $0) })
        case .fail(let sink, let error): .fail(sink, error.code, error.message)
        case .extended: .extended
        }
    }

    static func register(
        _ machine: inout Machine,
        _ id: String,
        sink: Int,
        mode: Machine.Mode = .single,
        deadline: NIODeadline
    ) -> Registered {
        describe(machine.register(id: id, pattern: "p.\(id)", mode: mode, deadline: deadline, sink: sink))
    }

    static func receive(_ machine: inout Machine, _ reply: WireReply, now: NIODeadline = t0) -> Received {
        describe(machine.receive(reply, now: now))
    }

    // MARK: Registration and the timer

    @Test func registerArmsTheTimerOnlyForANewEarliestDeadline() {
        var machine = Machine()
        #expect(machine.armedDeadline == nil)
        #expect(Self.register(&machine, "a", sink: 1, deadline: Self.at(100)) == .armTimer(Self.at(100)))
        #expect(Self.register(&machine, "b", sink: 2, deadline: Self.at(200)) == .none)
        #expect(Self.register(&machine, "c", sink: 3, deadline: Self.at(100)) == .none)
        #expect(machine.armedDeadline == Self.at(100))
        #expect(Self.register(&machine, "d", sink: 4, deadline: Self.at(50)) == .armTimer(Self.at(50)))
        #expect(machine.armedDeadline == Self.at(50))
        #expect(machine.pendingCount == 4)
    }

    @Test func duplicateIDIsRejectedAndTheFirstCallKept() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        #expect(Self.register(&machine, "a", sink: 2, deadline: Self.at(10)) == .reject(2, .unprocessable))
        #expect(machine.pendingCount == 1)
        #expect(machine.entries["a"]?.sink == 1)
        #expect(machine.entries["a"]?.deadline == Self.at(100))
        #expect(machine.armedDeadline == Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "a", response: Self.buffer("1"))) == .complete(1, "1"))
    }

    // MARK: Single calls

    @Test func singleModeCompletesOnTheFirstValue() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 7, deadline: Self.at(100))
        let first = WireReply(correlationID: "a", response: Self.buffer("6"))
        #expect(Self.receive(&machine, first) == .complete(7, "6"))
        #expect(machine.pendingCount == 0)
        // The call is over: a second value is dropped.
        #expect(Self.receive(&machine, WireReply(correlationID: "a", response: Self.buffer("7"))) == .drop)
    }

    @Test func singleModeCompletesWithoutValueOnDisposal() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 7, deadline: Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "a", isDisposed: true)) == .complete(7, nil))
        #expect(machine.pendingCount == 0)
    }

    @Test func emptyPacketIsIgnoredAndTheCallGoesOn() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 7, deadline: Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "a")) == .drop)
        #expect(machine.pendingCount == 1)
        #expect(Self.receive(&machine, WireReply(correlationID: "a", response: Self.buffer("1"))) == .complete(7, "1"))
    }

    // MARK: Streams

    @Test func streamDeliversValuesThenCompletesOnDisposal() {
        var machine = Machine()
        _ = Self.register(&machine, "s", sink: 9, mode: .stream, deadline: Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "s", response: Self.buffer("1"))) == .deliver(9, "1"))
        #expect(Self.receive(&machine, WireReply(correlationID: "s", response: Self.buffer("2"))) == .deliver(9, "2"))
        #expect(machine.pendingCount == 1)
        #expect(Self.receive(&machine, WireReply(correlationID: "s", isDisposed: true)) == .complete(9, nil))
        #expect(machine.pendingCount == 0)
        #expect(Self.receive(&machine, WireReply(correlationID: "s", response: Self.buffer("3"))) == .drop)
    }

    @Test func streamCompletesWithAFinalValueMergedIntoDisposal() {
        var machine = Machine()
        _ = Self.register(&machine, "s", sink: 9, mode: .stream, deadline: Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "s", response: Self.buffer("1"))) == .deliver(9, "1"))
        let last = WireReply(correlationID: "s", response: Self.buffer("2"), isDisposed: true)
        #expect(Self.receive(&machine, last) == .complete(9, "2"))
        #expect(machine.pendingCount == 0)
    }

    // MARK: Errors

    @Test func errorFailsTheCall() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.register(&machine, "s", sink: 2, mode: .stream, deadline: Self.at(100))
        let coded = WireReply(
            correlationID: "a",
            error: ["status": "error", "message": "bad", "code": 422],
            isDisposed: true
        )
        #expect(Self.receive(&machine, coded) == .fail(1, .unprocessable, "bad"))
        // An error ends a stream even with a value and without isDisposed.
        let midStream = WireReply(correlationID: "s", response: Self.buffer("1"), error: "boom")
        #expect(Self.receive(&machine, midStream) == .fail(2, .remote, "boom"))
        #expect(machine.pendingCount == 0)
    }

    @Test func unknownPatternReplyFailsWithNoHandler() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        let action = Self.receive(&machine, .noHandler(correlationID: "a"))
        #expect(action == .fail(1, .noHandler, WireReply.noHandlerMessage))
    }

    // MARK: Unknown ids and timeouts

    @Test func unknownIDIsDropped() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        #expect(Self.receive(&machine, WireReply(correlationID: "zzz", response: Self.buffer("1"))) == .drop)
        #expect(Self.receive(&machine, WireReply(correlationID: "zzz", error: "x")) == .drop)
        #expect(machine.pendingCount == 1)
    }

    @Test func lateReplyAfterTimeoutIsDropped() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        let fired = machine.timerFired(now: Self.at(100))
        #expect(fired.expired.map(\.sink) == [1])
        #expect(fired.nextDeadline == nil)
        let late = WireReply(correlationID: "a", response: Self.buffer("6"), isDisposed: true)
        #expect(Self.receive(&machine, late, now: Self.at(150)) == .drop)
        #expect(machine.pendingCount == 0)
    }

    @Test func timerFiredReturnsOnlyExpiredEntriesAndTheNextDeadline() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.register(&machine, "b", sink: 2, deadline: Self.at(300))
        _ = Self.register(&machine, "c", sink: 3, deadline: Self.at(50))
        _ = Self.register(&machine, "d", sink: 4, deadline: Self.at(200))

        let early = machine.timerFired(now: Self.at(10))
        #expect(early.expired.isEmpty)
        #expect(early.nextDeadline == Self.at(50))

        let first = machine.timerFired(now: Self.at(100))
        #expect(Set(first.expired.map(\.sink)) == [1, 3])
        #expect(Set(first.expired.map(\.pattern)) == ["p.a", "p.c"])
        #expect(first.nextDeadline == Self.at(200))
        #expect(machine.armedDeadline == Self.at(200))
        #expect(machine.pendingCount == 2)

        // A new call later than the armed deadline needs no timer; an earlier one re-arms.
        #expect(Self.register(&machine, "e", sink: 5, deadline: Self.at(250)) == .none)
        #expect(Self.register(&machine, "f", sink: 6, deadline: Self.at(150)) == .armTimer(Self.at(150)))

        let rest = machine.timerFired(now: Self.at(1000))
        #expect(Set(rest.expired.map(\.sink)) == [2, 4, 5, 6])
        #expect(rest.nextDeadline == nil)
        #expect(machine.armedDeadline == nil)
        #expect(machine.pendingCount == 0)
        // With nothing armed, the next registration arms the timer again.
        #expect(Self.register(&machine, "g", sink: 7, deadline: Self.at(2000)) == .armTimer(Self.at(2000)))
    }

    // MARK: Deadline extension

    @Test func extensionMovesTheDeadlineLaterAndTheTimerHonoursIt() {
        var machine = Machine()
        #expect(Self.register(&machine, "a", sink: 1, deadline: Self.at(100)) == .armTimer(Self.at(100)))
        let extend = WireReply(correlationID: "a", extendDeadline: .milliseconds(500))
        #expect(Self.receive(&machine, extend, now: Self.at(50)) == .extended)
        #expect(machine.entries["a"]?.deadline == Self.at(550))
        #expect(machine.pendingCount == 1)

        // The timer armed for the old deadline fires, finds nothing expired and re-arms at the new one.
        let atOldDeadline = machine.timerFired(now: Self.at(100))
        #expect(atOldDeadline.expired.isEmpty)
        #expect(atOldDeadline.nextDeadline == Self.at(550))

        #expect(machine.timerFired(now: Self.at(549)).expired.isEmpty)
        let atNewDeadline = machine.timerFired(now: Self.at(550))
        #expect(atNewDeadline.expired.map(\.sink) == [1])
        #expect(atNewDeadline.nextDeadline == nil)
    }

    // MARK: Idle timeout (streams)

    /// A stream with an idle timeout expires when no packet comes within it; each element and each extension starts
    /// it again; the whole-stream deadline still applies; an expiry says which of the two it was.
    @Test func anIdleTimeoutExpiresAStreamThatStopsSendingAndEachPacketRestartsIt() {
        var machine = Machine()
        let action = machine.register(id: "s", pattern: "p.s", mode: .stream, deadline: Self.at(1_000),
                                      idleTimeout: .milliseconds(100), now: Self.t0, sink: 1)
        #expect(Self.describe(action) == .armTimer(Self.at(100)))
        // An element at 80 ms: the next must come by 180 ms.
        #expect(Self.receive(&machine, WireReply(correlationID: "s", response: Self.buffer("1")), now: Self.at(80))
            == .deliver(1, "1"))
        let atFirstIdleDeadline = machine.timerFired(now: Self.at(100))
        #expect(atFirstIdleDeadline.expired.isEmpty)
        #expect(atFirstIdleDeadline.nextDeadline == Self.at(180))
        // An extension counts as a packet too (and moves the whole deadline).
        let extend = WireReply(correlationID: "s", extendDeadline: .milliseconds(2_000))
        #expect(Self.receive(&machine, extend, now: Self.at(150)) == .extended)
        #expect(machine.timerFired(now: Self.at(180)).nextDeadline == Self.at(250))
        let idle = machine.timerFired(now: Self.at(250))
        #expect(idle.expired.map(\.sink) == [1])
        #expect(idle.expired.first?.idledOut == true)

        // Elements that keep coming never let the idle timeout expire, but the deadline still does.
        _ = machine.register(id: "t", pattern: "p.t", mode: .stream, deadline: Self.at(500),
                             idleTimeout: .milliseconds(100), now: Self.t0, sink: 2)
        for time in stride(from: Int64(90), through: 450, by: 90) {
            _ = Self.receive(&machine, WireReply(correlationID: "t", response: Self.buffer("x")), now: Self.at(time))
            #expect(machine.timerFired(now: Self.at(time)).expired.isEmpty)
        }
        let atDeadline = machine.timerFired(now: Self.at(500))
        #expect(atDeadline.expired.map(\.sink) == [2])
        #expect(atDeadline.expired.first?.idledOut == false)
    }

    @Test func extensionNeverMovesTheDeadlineEarlier() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(1000))
        let short = WireReply(correlationID: "a", extendDeadline: .milliseconds(100))
        #expect(Self.receive(&machine, short, now: Self.at(10)) == .extended)
        #expect(machine.entries["a"]?.deadline == Self.at(1000))
        #expect(machine.timerFired(now: Self.at(110)).expired.isEmpty)
        #expect(machine.pendingCount == 1)
    }

    @Test func extensionForAnUnknownIDIsDropped() {
        var machine = Machine()
        let extend = WireReply(correlationID: "gone", extendDeadline: .seconds(1))
        #expect(Self.receive(&machine, extend) == .drop)
    }

    @Test func valueAfterExtensionStillCompletes() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.receive(&machine, WireReply(correlationID: "a", extendDeadline: .seconds(1)), now: Self.at(90))
        let reply = WireReply(correlationID: "a", response: Self.buffer("\"done\""), isDisposed: true)
        #expect(Self.receive(&machine, reply, now: Self.at(500)) == .complete(1, "\"done\""))
    }

    // MARK: Cancellation, connection loss, shutdown

    @Test func cancelRemovesTheCall() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.register(&machine, "b", sink: 2, deadline: Self.at(100))
        let cancelled = machine.cancel(id: "a")
        #expect(cancelled?.sink == 1)
        #expect(cancelled?.pattern == "p.a")
        #expect(machine.cancel(id: "a") == nil)
        #expect(machine.cancel(id: "unknown") == nil)
        #expect(machine.pendingCount == 1)
        #expect(Self.receive(&machine, WireReply(correlationID: "a", response: Self.buffer("1"))) == .drop)
        #expect(machine.timerFired(now: Self.at(100)).expired.map(\.sink) == [2])
    }

    @Test func failIDsRemovesOnlyThoseStillPending() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.register(&machine, "b", sink: 2, deadline: Self.at(100))
        _ = Self.register(&machine, "c", sink: 3, mode: .stream, deadline: Self.at(100))
        let failed = machine.fail(ids: ["a", "c", "missing"])
        #expect(Set(failed.map(\.sink)) == [1, 3])
        #expect(machine.pendingCount == 1)
        #expect(machine.entries["b"]?.sink == 2)
        #expect(machine.fail(ids: ["a"]).isEmpty)
    }

    @Test func shutdownFailsEverythingAndRejectsLaterRegistrations() {
        var machine = Machine()
        _ = Self.register(&machine, "a", sink: 1, deadline: Self.at(100))
        _ = Self.register(&machine, "b", sink: 2, mode: .stream, deadline: Self.at(200))
        let all = machine.shutdown()
        #expect(Set(all.map(\.sink)) == [1, 2])
        #expect(machine.isShutdown)
        #expect(machine.pendingCount == 0)
        #expect(machine.armedDeadline == nil)
        #expect(Self.register(&machine, "c", sink: 3, deadline: Self.at(300)) == .reject(3, .transportUnavailable))
        #expect(machine.pendingCount == 0)
        #expect(machine.shutdown().isEmpty)
        #expect(Self.receive(&machine, WireReply(correlationID: "a", response: Self.buffer("1"))) == .drop)
    }
}
