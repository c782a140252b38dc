//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization
import Testing

@Suite struct ReplyCorrelatorTests {
    /// Waits until `condition` holds, checking every few milliseconds, for at most `limit`.
    static func eventually(
        within limit: Duration = .seconds(3),
        _ condition: () -> Bool
    ) async throws -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + limit
        while clock.now < end {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(2))
        }
        return condition()
    }

    /// Runs `body` and returns the CourierError it throws, recording an issue if it throws anything else.
    static func courierError(
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () async throws -> Void
    ) async -> CourierError? {
        do {
            try await body()
            Issue.record("expected a CourierError, got success", sourceLocation: sourceLocation)
        } catch let error as CourierError {
            return error
        } catch {
            Issue.record("expected a CourierError, got \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    /// A one-shot signal from a synchronous `send` closure to the test.
    final class Signal: Sendable {
        private let stream: AsyncStream<Void>
        private let continuation: AsyncStream<Void>.Continuation
        init() { (stream, continuation) = AsyncStream.makeStream() }
        func fire() { continuation.yield() }
        func wait() async {
            for await _ in stream { return }
        }
    }

    final class Flag: Sendable {
        private let value = Atomic<Int>(0)
        func set() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    static func reply(_ id: String, _ json: String, disposed: Bool = true) -> WireReply {
        WireReply(correlationID: id, response: ByteBuffer(string: json), isDisposed: disposed)
    }

    // MARK: Single calls

    @Test func shortTimeoutThrowsTimedOut() async throws {
        let correlator = ReplyCorrelator()
        let clock = ContinuousClock()
        let start = clock.now
        let error = await Self.courierError {
            _ = try await correlator.awaitReply(id: "a", pattern: "slow.call", timeout: .milliseconds(50)) {}
        }
        let elapsed = clock.now - start
        #expect(error?.code == .timedOut)
        #expect(error?.message.contains("slow.call") == true)
        #expect(elapsed >= .milliseconds(45), "timed out after \(elapsed)")
        // Fired by the timer, not by something much later (a loaded CI machine once took 3.2 s; a lost timer hangs).
        #expect(elapsed < .seconds(15), "timed out after \(elapsed)")
        #expect(correlator.pendingCount == 0)
    }

    @Test func replyBeforeTheDeadlineReturnsItsValue() async throws {
        let correlator = ReplyCorrelator()
        let value = try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(5)) {
            Task { correlator.receive(Self.reply("a", "42")) }
        }
        #expect(value.map { String(buffer: $0) } == "42")
        #expect(correlator.pendingCount == 0)
    }

    @Test func disposalWithoutValueReturnsNil() async throws {
        let correlator = ReplyCorrelator()
        let value = try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(5)) {
            correlator.receive(WireReply(correlationID: "a", isDisposed: true))
        }
        #expect(value == nil)
    }

    @Test func remoteErrorIsThrown() async {
        let correlator = ReplyCorrelator()
        let error = await Self.courierError {
            _ = try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(5)) {
                correlator.receive(.noHandler(correlationID: "a"))
            }
        }
        #expect(error?.code == .noHandler)
        #expect(error?.isRemote == true)
    }

    @Test func lateReplyIsIgnored() async throws {
        let correlator = ReplyCorrelator()
        let error = await Self.courierError {
            _ = try await correlator.awaitReply(id: "old", pattern: "p", timeout: .milliseconds(30)) {}
        }
        #expect(error?.code == .timedOut)
        // The late reply for the timed-out call is dropped and cannot complete a newer call.
        let value = try await correlator.awaitReply(id: "new", pattern: "p", timeout: .seconds(5)) {
            correlator.receive(Self.reply("old", "1"))
            Task { correlator.receive(Self.reply("new", "2")) }
        }
        #expect(value.map { String(buffer: $0) } == "2")
        #expect(correlator.pendingCount == 0)
    }

    @Test func earlierDeadlineFiresFirstWhileLaterCallStillSucceeds() async throws {
        let correlator = ReplyCorrelator()
        let sent = Signal()
        let slow = Task {
            try await correlator.awaitReply(id: "slow", pattern: "p", timeout: .seconds(5)) { sent.fire() }
        }
        await sent.wait()
        let error = await Self.courierError {
            _ = try await correlator.awaitReply(id: "fast", pattern: "p", timeout: .milliseconds(30)) {}
        }
        #expect(error?.code == .timedOut)
        #expect(correlator.pendingCount == 1)
        correlator.receive(Self.reply("slow", "\"ok\""))
        let value = try await slow.value
        #expect(value.map { String(buffer: $0) } == "\"ok\"")
    }

    @Test func duplicateIDFailsTheSecondCall() async throws {
        let correlator = ReplyCorrelator()
        let sent = Signal()
        let first = Task {
            try await correlator.awaitReply(id: "dup", pattern: "p", timeout: .seconds(5)) { sent.fire() }
        }
        await sent.wait()
        let error = await Self.courierError {
            _ = try await correlator.awaitReply(id: "dup", pattern: "p", timeout: .seconds(5)) {
                Issue.record("send must not run for a rejected call")
            }
        }
        #expect(error?.code == .unprocessable)
        correlator.receive(Self.reply("dup", "1"))
        #expect(try await first.value.map { String(buffer: $0) } == "1")
    }

    /// A call refused for its duplicate id must not touch the pending call that holds the id, even when its task
    /// was cancelled (its cancellation handler forgot "the call with this id", which was the other one).
    @Test func aCancelledDuplicateDoesNotCancelThePendingCall() async throws {
        let correlator = ReplyCorrelator()
        let sent = Signal()
        let first = Task {
            try await correlator.awaitReply(id: "dup", pattern: "p", timeout: .seconds(5)) { sent.fire() }
        }
        await sent.wait()
        let duplicate = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await correlator.awaitReply(id: "dup", pattern: "p", timeout: .seconds(5)) {
                Issue.record("send must not run for a rejected call")
            }
        }
        _ = await Self.courierError { _ = try await duplicate.value }
        #expect(correlator.pendingCount == 1)
        correlator.receive(Self.reply("dup", "1"))
        let value = try await first.value
        #expect(value.map { String(buffer: $0) } == "1")
    }

    @Test func cancellingTheAwaitingTaskGivesCancelled() async throws {
        let correlator = ReplyCorrelator()
        let sent = Signal()
        let call = Task {
            try await correlator.awaitReply(id: "a", pattern: "cancel.me", timeout: .seconds(30)) { sent.fire() }
        }
        await sent.wait()
        #expect(correlator.pendingCount == 1)
        let clock = ContinuousClock()
        let start = clock.now
        call.cancel()
        let error = await Self.courierError { _ = try await call.value }
        #expect(error?.code == .cancelled)
        #expect(error?.message.contains("cancel.me") == true)
        #expect(clock.now - start < .seconds(2))
        #expect(correlator.pendingCount == 0)
        // A reply after cancellation is dropped quietly.
        correlator.receive(Self.reply("a", "1"))
        #expect(correlator.pendingCount == 0)
    }

    @Test func alreadyCancelledTaskNeverSends() async {
        let correlator = ReplyCorrelator()
        let sends = Flag()
        let call = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            return try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(30)) { sends.set() }
        }
        let error = await Self.courierError { _ = try await call.value }
        #expect(error?.code == .cancelled)
        #expect(sends.count == 0)
        #expect(correlator.pendingCount == 0)
    }

    @Test func failCorrelationIDsFailsOnlyThoseCalls() async throws {
        let correlator = ReplyCorrelator()
        let sentA = Signal()
        let sentB = Signal()
        let a = Task { try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(30)) { sentA.fire() } }
        let b = Task { try await correlator.awaitReply(id: "b", pattern: "p", timeout: .seconds(30)) { sentB.fire() } }
        await sentA.wait()
        await sentB.wait()
        correlator.fail(correlationIDs: ["a", "zzz"], with: .unavailable("connection lost"))
        let error = await Self.courierError { _ = try await a.value }
        #expect(error?.code == .transportUnavailable)
        #expect(error?.message == "connection lost")
        #expect(correlator.pendingCount == 1)
        correlator.receive(Self.reply("b", "2"))
        #expect(try await b.value.map { String(buffer: $0) } == "2")
    }

    @Test func callsSpreadOverEveryShardAreFailedTimedOutAndAnsweredByID() async throws {
        let correlator = ReplyCorrelator()
        // Real correlation ids end in a counter's hex digit, so these land in every shard.
        let ids = (0..<48).map { _ in CorrelationID.make() }
        let registered = Flag()
        let calls = ids.enumerated().map { index, id in
            Task { () -> String in
                do {
                    // A third time out, a third fail with the connection, a third get their replies.
                    let timeout: Duration = index % 3 == 0 ? .milliseconds(50) : .seconds(30)
                    let value = try await correlator.awaitReply(id: id, pattern: "p", timeout: timeout) {
                        registered.set()
                    }
                    return value.map { String(buffer: $0) } ?? "nil"
                } catch {
                    return (error as? CourierError).map { "\($0.code)" } ?? "\(error)"
                }
            }
        }
        #expect(try await Self.eventually { registered.count == ids.count })
        // The calls with 30 s timeouts are pending in their shards (the 50 ms ones may have expired already).
        #expect(correlator.pendingCount >= ids.count * 2 / 3)
        correlator.fail(correlationIDs: ids.enumerated().filter { $0.offset % 3 == 1 }.map(\.element),
                        with: .unavailable("connection lost"))
        for (index, id) in ids.enumerated() where index % 3 == 2 { correlator.receive(Self.reply(id, "\(index)")) }
        var outcomes: [String] = []
        for call in calls { outcomes.append(await call.value) }
        #expect(outcomes == ids.indices.map { index in
            switch index % 3 {
            case 0: "\(CourierError.Code.timedOut)"
            case 1: "\(CourierError.Code.transportUnavailable)"
            default: "\(index)"
            }
        })
        #expect(correlator.pendingCount == 0)
    }

    // MARK: Streams

    @Test func streamYieldsValuesUntilDisposal() async throws {
        let correlator = ReplyCorrelator()
        let cancels = Flag()
        let stream = correlator.openStream(id: "s", pattern: "p", timeout: .seconds(5)) { cancels.set() }
        correlator.receive(Self.reply("s", "3", disposed: false))
        correlator.receive(Self.reply("s", "2", disposed: false))
        correlator.receive(Self.reply("s", "1", disposed: true))
        var values: [String] = []
        for try await value in stream { values.append(String(buffer: value)) }
        #expect(values == ["3", "2", "1"])
        #expect(correlator.pendingCount == 0)
        #expect(cancels.count == 0, "onRelease must not run when the stream ends normally")
    }

    @Test func streamOnReleaseRunsWhenIterationStopsEarly() async throws {
        let correlator = ReplyCorrelator()
        let cancels = Flag()
        func consumeOne() async throws -> String? {
            let stream = correlator.openStream(id: "s", pattern: "p", timeout: .seconds(10)) { cancels.set() }
            correlator.receive(Self.reply("s", "1", disposed: false))
            correlator.receive(Self.reply("s", "2", disposed: false))
            for try await value in stream { return String(buffer: value) }
            return nil
        }
        #expect(try await consumeOne() == "1")
        #expect(try await Self.eventually { cancels.count == 1 }, "onRelease did not run")
        #expect(correlator.pendingCount == 0)
        // Further replies for the forgotten call are dropped.
        correlator.receive(Self.reply("s", "3", disposed: true))
        #expect(cancels.count == 1)
    }

    @Test func streamTimesOut() async throws {
        let correlator = ReplyCorrelator()
        let releases = Flag()
        let stream = correlator.openStream(id: "s", pattern: "slow.stream", timeout: .milliseconds(50)) { releases.set() }
        correlator.receive(Self.reply("s", "1", disposed: false))
        var values: [String] = []
        let error = await Self.courierError {
            for try await value in stream { values.append(String(buffer: value)) }
        }
        #expect(values == ["1"])
        #expect(error?.code == .timedOut)
        #expect(correlator.pendingCount == 0)
        // The transport is told to forget the id (TCP keeps each pending id until then).
        #expect(releases.count == 1)
    }

    /// A stream whose elements stop coming fails after its idle timeout (counted from the last element received),
    /// long before its deadline, saying so. (That each element restarts it is the state machine's test.)
    @Test func aStreamThatStopsSendingTimesOutAfterItsIdleTimeout() async throws {
        let correlator = ReplyCorrelator()
        let releases = Flag()
        let stream = correlator.openStream(id: "s", pattern: "quiet.stream", timeout: .seconds(30),
                                           idleTimeout: .milliseconds(500)) { releases.set() }
        for value in 1...3 { correlator.receive(Self.reply("s", "\(value)", disposed: false)) }
        let clock = ContinuousClock()
        let start = clock.now
        var values: [String] = []
        let error = await Self.courierError {
            for try await value in stream { values.append(String(buffer: value)) }
        }
        #expect(values == ["1", "2", "3"])
        #expect(error?.code == .timedOut)
        #expect(error?.message.contains("idle timeout") == true)
        #expect(start.duration(to: clock.now) < .seconds(20))
        #expect(correlator.pendingCount == 0)
        #expect(releases.count == 1)
    }

    @Test func streamErrorEndsIteration() async throws {
        let correlator = ReplyCorrelator()
        let stream = correlator.openStream(id: "s", pattern: "p", timeout: .seconds(5)) {}
        correlator.receive(Self.reply("s", "1", disposed: false))
        correlator.receive(WireReply(correlationID: "s", error: ["message": "broken", "code": 422], isDisposed: true))
        var values: [String] = []
        let error = await Self.courierError {
            for try await value in stream { values.append(String(buffer: value)) }
        }
        #expect(values == ["1"])
        #expect(error?.code == .unprocessable)
        #expect(error?.message == "broken")
    }

    // MARK: Shutdown

    @Test func shutdownFailsPendingCallsWithTransportUnavailable() async throws {
        let correlator = ReplyCorrelator()
        let sent = Signal()
        let call = Task {
            try await correlator.awaitReply(id: "a", pattern: "p", timeout: .seconds(30)) { sent.fire() }
        }
        await sent.wait()
        let stream = correlator.openStream(id: "s", pattern: "p", timeout: .seconds(30)) {}
        #expect(correlator.pendingCount == 2)

        correlator.shutdown()

        let callError = await Self.courierError { _ = try await call.value }
        #expect(callError?.code == .transportUnavailable)
        let streamError = await Self.courierError { for try await _ in stream {} }
        #expect(streamError?.code == .transportUnavailable)
        #expect(correlator.pendingCount == 0)

        // Later calls are refused at once, without sending.
        let later = await Self.courierError {
            _ = try await correlator.awaitReply(id: "b", pattern: "p", timeout: .seconds(30)) {
                Issue.record("send must not run after shutdown")
            }
        }
        #expect(later?.code == .transportUnavailable)
    }
}
