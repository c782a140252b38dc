//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample
import Logging
import ServiceLifecycle
import Synchronization

/// Makes the transports a conformance run needs. Each transport's test target provides one.
public protocol ConformanceHarness: Sendable {
    /// What the transport can do, so scenarios that do not apply are skipped.
    var features: TransportFeatures { get }
    /// A new server transport (for example listening on a free loopback port).
    func makeServer() throws -> any ServerTransport
    /// Returns once `server` accepts messages (for example once it is bound).
    func waitUntilServing(_ server: any ServerTransport) async throws
    /// A new client transport that reaches `server`.
    func makeClient(for server: any ServerTransport) async throws -> any ClientTransport
}

/// What a transport supports, for the conformance suite to decide which scenarios apply.
public struct TransportFeatures: Sendable {
    /// What a caller sees when it calls a pattern no worker serves.
    public enum UnknownPatterns: Sendable {
        /// NestJS's "no matching message handler" reply (``CourierError/Code/noHandler``): point-to-point
        /// transports, where the worker receives every request (TCP).
        case noHandlerReply
        /// Nothing: nobody receives the request, so the call times out (brokers that keep it, such as Kafka).
        case timeout
        /// ``CourierError/Code/transportUnavailable`` at once: the transport knows nobody received it (Redis
        /// pub/sub, whose `PUBLISH` counts its receivers).
        case unavailable

        /// The code such a call fails with.
        var errorCode: CourierError.Code {
            switch self {
            case .noHandlerReply: .noHandler
            case .timeout: .timedOut
            case .unavailable: .transportUnavailable
            }
        }
    }

    /// Whether a caller announces its deadline and handlers can extend it.
    public var deadlineExtension: Bool
    /// What a call to a pattern no worker serves does.
    public var unknownPatterns: UnknownPatterns

    /// Features to test; by default everything is on and unknown patterns get a reply.
    public init(deadlineExtension: Bool = true, unknownPatterns: UnknownPatterns = .noHandlerReply) {
        self.deadlineExtension = deadlineExtension
        self.unknownPatterns = unknownPatterns
    }
}

/// A check that did not hold in a conformance scenario.
public struct ConformanceFailure: Error, CustomStringConvertible {
    /// Where and what failed.
    public var description: String
}

/// The behaviour every Courier transport must show, as scenarios a transport's test target runs:
///
/// ```swift
/// @Test(arguments: TransportConformance.scenarios)
/// func conformance(_ scenario: TransportConformance.Scenario) async throws {
///     try await scenario.run(MyHarness())
/// }
/// ```
///
/// Every scenario starts a ``Microservice`` serving the example service (``ExampleService``) plus a few test
/// handlers, calls it through a ``CourierClient``, and stops it.
public enum TransportConformance {
    /// One behaviour to check.
    public struct Scenario: Sendable, CustomStringConvertible {
        /// What the scenario checks, as a sentence.
        public let name: String
        let body: @Sendable (any ConformanceHarness) async throws -> Void

        public var description: String { name }

        /// Runs the scenario against a transport.
        public func run(_ harness: any ConformanceHarness) async throws {
            try await body(harness)
        }
    }

    /// Every scenario, in a stable order.
    public static let scenarios: [Scenario] = [
        Scenario(name: "send returns the handler's reply", body: sendReturnsReply),
        Scenario(name: "emit reaches event handlers and gets no reply", body: emitReachesHandlers),
        Scenario(name: "emitBatch delivers every event of the batch once", body: emitBatchReachesHandlers),
        Scenario(name: "sendStream yields every element, then ends", body: streamYieldsElements),
        Scenario(name: "an empty stream ends at once", body: emptyStream),
        Scenario(name: "a coded error reaches the caller exactly", body: codedErrorReachesCaller),
        Scenario(name: "any other error becomes Internal server error", body: plainErrorIsGeneric),
        Scenario(name: "an unknown pattern fails with noHandler", body: unknownPattern),
        Scenario(name: "an undecodable request fails with decodingFailed", body: undecodableRequest),
        Scenario(name: "an undecodable reply fails locally with decodingFailed", body: undecodableReply),
        Scenario(name: "a slow handler times out and its late reply is dropped", body: timeoutDropsLateReply),
        Scenario(name: "a handler can extend the caller's deadline", body: deadlineExtension),
        Scenario(name: "cancelling the calling task cancels the call", body: cancellation),
        Scenario(name: "breaking out of a stream forgets the call", body: streamEarlyExit),
        Scenario(name: "an error in the middle of a stream ends it", body: streamErrorMidway),
        Scenario(name: "a stream past its deadline ends with timedOut", body: streamTimeout),
        Scenario(name: "a stream that stops sending ends after its idle timeout", body: streamIdleTimeout),
        Scenario(name: "wildcard routes match and report their route", body: wildcardRoutes),
        Scenario(name: "headers reach the handler", body: headersTravel),
        Scenario(name: "1,000 concurrent calls are all answered correctly", body: concurrentCalls),
        Scenario(name: "a handler waiting for a later call does not hold that call up", body: handlersRunConcurrently),
        Scenario(name: "a graceful shutdown finishes in-flight work", body: gracefulShutdownDrains),
    ]

    // MARK: Scenario plumbing

    static func check(
        _ condition: Bool,
        _ message: @autoclosure () -> String,
        file: StaticString = #fileID,
        line: UInt = #line
    ) throws {
        guard condition else { throw ConformanceFailure(description: "\(file):\(line): \(message())") }
    }

    static func expectError(
        _ code: CourierError.Code,
        file: StaticString = #fileID,
        line: UInt = #line,
        _ body: () async throws -> Void
    ) async throws -> CourierError {
        do {
            try await body()
        } catch let error as CourierError {
            try check(error.code == code, "expected \(code), got \(error)", file: file, line: line)
            return error
        } catch {
            throw ConformanceFailure(description: "\(file):\(line): expected CourierError \(code), got \(error)")
        }
        throw ConformanceFailure(description: "\(file):\(line): expected CourierError \(code), got success")
    }

    /// Test-only contracts served next to the example service.
    enum Probe {
        static let crash = MessagePattern<NoPayload, Int>("probe.crash")
        static let sleep = MessagePattern<Int, String>("probe.sleep")
        static let extend = MessagePattern<Int, String>("probe.extend")
        static let brokenStream = StreamPattern<Int, Int>("probe.broken-stream")
        static let slowStream = StreamPattern<Int, Int>("probe.slow-stream")
        static let stallingStream = StreamPattern<Int, Int>("probe.stalling-stream")
        static let greet = MessagePattern<NoPayload, String>("greet.*")
        static let deepGreet = MessagePattern<NoPayload, String>("greet.**")
        static let header = MessagePattern<String, String?>("probe.header")
        static let remaining = MessagePattern<NoPayload, Bool>("probe.has-deadline")
        static let awaitSignal = MessagePattern<NoPayload, String>("probe.await-signal")
        static let signal = MessagePattern<NoPayload, Bool>("probe.signal")
    }

    struct PlainError: Error {}

    /// The example service plus the probes.
    static func router(audit: AuditLog, sleeps: Completions) -> MessageRouter {
        var router = ExampleService.router(audit: audit)
        router.on(Probe.crash) { _, _ in throw PlainError() }
        router.on(Probe.sleep) { milliseconds, _ in
            try? await Task.sleep(for: .milliseconds(milliseconds))
            sleeps.increment()
            return "slept \(milliseconds) ms"
        }
        router.on(Probe.extend) { milliseconds, context in
            try await context.extendDeadline(by: .milliseconds(milliseconds * 4))
            try await Task.sleep(for: .milliseconds(milliseconds))
            return "done"
        }
        router.on(Probe.brokenStream) { count, _, replies in
            for value in 0..<count { try await replies.send(value) }
            throw CourierError(.unprocessable, "broken after \(count)")
        }
        router.on(Probe.slowStream) { count, _, replies in
            for value in 0..<count {
                try await replies.send(value)
                try await Task.sleep(for: .milliseconds(5))
            }
        }
        router.on(Probe.stallingStream) { count, _, replies in
            for value in 0..<count { try await replies.send(value) }
            try await Task.sleep(for: .seconds(8))  // then nothing for a while (cancelled when the worker stops)
            try await replies.send(count)
        }
        router.on(Probe.greet) { _, context in "one:\(context.pattern):\(context.route)" }
        router.on(Probe.deepGreet) { _, context in "rest:\(context.pattern):\(context.route)" }
        router.on(Probe.header) { name, context in context.headers[name] }
        router.on(Probe.remaining) { _, context in context.remainingTime != nil }
        let signal = Signal()
        router.on(Probe.awaitSignal) { _, _ in await signal.wait() ? "signalled" : "never signalled" }
        router.on(Probe.signal) { _, _ in signal.fire() }
        return router
    }

    /// One handler waits on it until another fires it.
    final class Signal: Sendable {
        private let state = Mutex<(waiting: Int, fired: Bool)>((0, false))

        /// Waits until fired, for 20 s at most; returns whether it was fired.
        func wait() async -> Bool {
            state.withLock { $0.waiting += 1 }
            // Polls, so that a worker that never runs the firing handler still ends this one.
            for _ in 0..<2_000 {
                if state.withLock({ $0.fired }) { return true }
                try? await Task.sleep(for: .milliseconds(10))
            }
            return false
        }

        /// Fires the signal if a handler is waiting on it; returns whether one was.
        func fire() -> Bool {
            state.withLock { state in
                guard state.waiting > 0 else { return false }
                state.fired = true
                return true
            }
        }
    }

    /// Counts finished probe sleeps.
    final class Completions: Sendable {
        private let value = Atomic<Int>(0)
        func increment() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    /// A running worker and a client connected to it.
    struct Fixture: Sendable {
        let client: CourierClient
        let audit: AuditLog
        let sleeps: Completions
        let worker: Microservice
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "courier.conformance")
        logger.logLevel = .critical
        return logger
    }

    /// A worker serving the example service and the probes on `server`.
    static func makeWorker(
        _ server: any ServerTransport,
        configuration: MicroserviceConfiguration,
        audit: AuditLog,
        sleeps: Completions
    ) -> Microservice {
        Microservice(
            router: router(audit: audit, sleeps: sleeps),
            transport: server,
            configuration: configuration,
            logger: quietLogger
        )
    }

    /// Starts a worker, runs `body` with a client, then stops both.
    static func withWorker(
        _ harness: any ConformanceHarness,
        configuration: MicroserviceConfiguration = .init(),
        clientConfiguration: ClientConfiguration = .init(defaultTimeout: .seconds(10)),
        _ body: @Sendable (Fixture) async throws -> Void
    ) async throws {
        let audit = AuditLog()
        let sleeps = Completions()
        let server = try harness.makeServer()
        let worker = makeWorker(server, configuration: configuration, audit: audit, sleeps: sleeps)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            try await harness.waitUntilServing(server)
            let client = CourierClient(
                transport: try await harness.makeClient(for: server),
                configuration: clientConfiguration
            )
            do {
                try await body(Fixture(client: client, audit: audit, sleeps: sleeps, worker: worker))
            } catch {
                await client.shutdown()
                group.cancelAll()
                throw error
            }
            await client.shutdown()
            group.cancelAll()
        }
    }

    // MARK: Scenarios

    static func sendReturnsReply(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let sum = try await fixture.client.send(ExampleService.sum, [1, 2, 3])
            try check(sum == 6, "math.sum [1,2,3] returned \(sum)")
            let empty = try await fixture.client.send(ExampleService.sum, [])
            try check(empty == 0, "math.sum [] returned \(empty)")
            let untyped = try await fixture.client.send("math.sum", json: [40, 2])
            try check(untyped == 42, "untyped math.sum returned \(untyped)")
            try check(fixture.client.pendingCalls == 0, "calls left pending: \(fixture.client.pendingCalls)")
        }
    }

    static func emitReachesHandlers(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            for index in 0..<5 {
                try await fixture.client.emit(ExampleService.auditLog, ["index": .integer(Int64(index))])
            }
            try await eventually("five audit events") { fixture.audit.count == 5 }
            let counted = try await fixture.client.send(ExampleService.auditCount, NoPayload())
            try check(counted == 5, "audit.count replied \(counted)")
            let indexes = Set(fixture.audit.all.compactMap { $0["index"]?.intValue })
            try check(indexes == Set(0..<5), "events received: \(fixture.audit.all)")
        }
    }

    static func emitBatchReachesHandlers(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            try await fixture.client.emitBatch(ExampleService.auditLog, [JSONValue]())
            let batch: [JSONValue] = (0..<300).map { ["index": .integer(Int64($0))] }
            try await fixture.client.emitBatch(ExampleService.auditLog, batch)
            try await fixture.client.emitBatch("audit.log", json: [["index": 300], ["index": 301]])
            try await eventually("302 audit events") { fixture.audit.count >= 302 }
            // A round trip after the batch: nothing more arrives (each event once, the empty batch sent nothing).
            let counted = try await fixture.client.send(ExampleService.auditCount, NoPayload())
            try check(counted == 302, "audit.count replied \(counted)")
            let indexes = fixture.audit.all.compactMap { $0["index"]?.intValue }
            try check(indexes.count == 302 && Set(indexes) == Set(0..<302), "events received: \(indexes)")
        }
    }

    static func streamYieldsElements(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let values = try await fixture.client.sendStream(ExampleService.countdown, 5).collect()
            try check(values == [5, 4, 3, 2, 1], "countdown 5 yielded \(values)")
            let many = try await fixture.client.sendStream(ExampleService.countdown, 500).collect()
            try check(many == Array((1...500).reversed()), "countdown 500 yielded \(many.count) elements")
            try check(fixture.client.pendingCalls == 0, "calls left pending: \(fixture.client.pendingCalls)")
        }
    }

    static func emptyStream(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let values = try await fixture.client.sendStream(ExampleService.countdown, 0).collect()
            try check(values.isEmpty, "countdown 0 yielded \(values)")
        }
    }

    static func codedErrorReachesCaller(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let error = try await expectError(.unprocessable) {
                _ = try await fixture.client.send(ExampleService.fail, ["x": 1])
            }
            try check(error.code.rawValue == 422, "code \(error.code.rawValue)")
            try check(error.message == ExampleService.failMessage, "message '\(error.message)'")
            try check(error.isRemote, "the error should be marked remote")
            try check(error.details == ["request": ["x": 1]], "details \(String(describing: error.details))")
            let streamed = try await expectError(.unprocessable) {
                _ = try await fixture.client.sendStream(ExampleService.countdown, -1).collect()
            }
            try check(streamed.isRemote, "stream error should be remote")
        }
    }

    static func plainErrorIsGeneric(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let error = try await expectError(.remote) {
                _ = try await fixture.client.send(Probe.crash, NoPayload())
            }
            try check(error.message == "Internal server error", "message '\(error.message)'")
            try check(error.details == ["status": "error", "message": "Internal server error"],
                      "details \(String(describing: error.details))")
            // The worker survives and keeps serving.
            let sum = try await fixture.client.send(ExampleService.sum, [2, 2])
            try check(sum == 4, "math.sum after a crash returned \(sum)")
        }
    }

    static func unknownPattern(_ harness: any ConformanceHarness) async throws {
        switch harness.features.unknownPatterns {
        case .noHandlerReply:
            break
        case .timeout, .unavailable:
            let expected = harness.features.unknownPatterns.errorCode
            try await withWorker(harness) { fixture in
                // transportUnavailable (not timedOut) shows that the call did not wait for its deadline.
                _ = try await expectError(expected) {
                    _ = try await fixture.client.send("math.nothing", json: nil, timeout: .seconds(2))
                }
                let sum = try await fixture.client.send(ExampleService.sum, [1])
                try check(sum == 1, "math.sum after an unanswered pattern returned \(sum)")
            }
            return
        }
        try await withWorker(harness) { fixture in
            let error = try await expectError(.noHandler) {
                _ = try await fixture.client.send("math.nothing", json: nil)
            }
            try check(
                error.message == "There is no matching message handler defined in the remote service.",
                "message '\(error.message)'"
            )
            _ = try await expectError(.noHandler) {
                _ = try await fixture.client.sendStream("math.nothing", json: nil).collect()
            }
            // Events to unknown patterns are dropped by the worker, never answered.
            try await fixture.client.emit("audit.nothing", json: 1)
            let sum = try await fixture.client.send(ExampleService.sum, [1])
            try check(sum == 1, "math.sum after unknown patterns returned \(sum)")
        }
    }

    static func undecodableRequest(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let error = try await expectError(.decodingFailed) {
                _ = try await fixture.client.send("math.sum", json: "not numbers")
            }
            try check(error.isRemote, "the decoding failure happened on the worker")
        }
    }

    static func undecodableReply(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let wrong = MessagePattern<[Int], [String]>("math.sum")
            let error = try await expectError(.decodingFailed) {
                _ = try await fixture.client.send(wrong, [1, 2])
            }
            try check(!error.isRemote, "the decoding failure happened on the caller")
        }
    }

    static func timeoutDropsLateReply(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let clock = ContinuousClock()
            let start = clock.now
            _ = try await expectError(.timedOut) {
                _ = try await fixture.client.send(Probe.sleep, 1_500, timeout: .milliseconds(100))
            }
            // timedOut rather than the reply already shows that the 100 ms deadline, not the 10 s default, applied.
            // The upper bound is generous: tests run in parallel on small machines, and a fresh-clone CI run once
            // resumed this caller 2.0 s after its deadline (1.4 s was the bound then).
            let waited = clock.now - start
            try check(waited >= .milliseconds(90) && waited < .seconds(8), "timed out after \(waited)")
            try check(fixture.client.pendingCalls == 0, "the timed-out call is still pending")
            // Wait for the late reply to arrive and be dropped; the client keeps working.
            try await eventually("the slow handler finished") { fixture.sleeps.count == 1 }
            try await Task.sleep(for: .milliseconds(50))
            let sum = try await fixture.client.send(ExampleService.sum, [5, 5])
            try check(sum == 10, "math.sum after a late reply returned \(sum)")
        }
    }

    static func deadlineExtension(_ harness: any ConformanceHarness) async throws {
        guard harness.features.deadlineExtension else { return }
        try await withWorker(harness) { fixture in
            let seen = try await fixture.client.send(Probe.remaining, NoPayload())
            try check(seen, "the handler should see the caller's deadline")
            // The caller allows 2 s; the handler asks for 4 × 3 s and takes 3 s. (The margins are wide because
            // suites run in parallel on small machines, and a broker round trip carries the extension.)
            let reply = try await fixture.client.send(Probe.extend, 3_000, timeout: .seconds(2))
            try check(reply == "done", "extended call replied \(reply)")
        }
    }

    static func cancellation(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let client = fixture.client
            let task = Task { try await client.send(Probe.sleep, 2_000) }
            try await eventually("the call is pending") { client.pendingCalls == 1 }
            task.cancel()
            let result = await task.result
            guard case .failure(let error as CourierError) = result, error.code == .cancelled else {
                throw ConformanceFailure(description: "expected cancelled, got \(result)")
            }
            try check(client.pendingCalls == 0, "the cancelled call is still pending")
            let sum = try await client.send(ExampleService.sum, [3])
            try check(sum == 3, "math.sum after a cancellation returned \(sum)")
        }
    }

    static func streamEarlyExit(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            var seen: [Int] = []
            for try await value in try await fixture.client.sendStream(Probe.slowStream, 200) {
                seen.append(value)
                if seen.count == 3 { break }
            }
            try check(seen == [0, 1, 2], "first elements \(seen)")
            try await eventually("the stream call is forgotten") { fixture.client.pendingCalls == 0 }
            let values = try await fixture.client.sendStream(ExampleService.countdown, 3).collect()
            try check(values == [3, 2, 1], "a later stream yielded \(values)")
        }
    }

    static func streamErrorMidway(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            var seen: [Int] = []
            do {
                for try await value in try await fixture.client.sendStream(Probe.brokenStream, 3) {
                    seen.append(value)
                }
                throw ConformanceFailure(description: "the broken stream ended without an error")
            } catch let error as CourierError {
                try check(error.code == .unprocessable && error.message == "broken after 3", "error \(error)")
            }
            try check(seen == [0, 1, 2], "elements before the error: \(seen)")
        }
    }

    static func streamTimeout(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            var seen = 0
            _ = try await expectError(.timedOut) {
                // 200 elements 5 ms apart take a second; the caller allows 300 ms.
                for try await _ in try await fixture.client.sendStream(Probe.slowStream, 200, timeout: .milliseconds(300)) {
                    seen += 1
                }
            }
            // Either side may notice first: the caller's timer, or the handler's writer refusing to send past the
            // caller's deadline; both end the stream with timedOut.
            try check(seen < 200, "elements before the timeout: \(seen)")
            try check(fixture.client.pendingCalls == 0, "the timed-out stream is still pending")
        }
    }

    static func streamIdleTimeout(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            // Elements that keep coming are not cut off, however long the stream takes in all.
            var steady = 0
            for try await _ in try await fixture.client.sendStream(Probe.slowStream, 40, timeout: .seconds(30),
                                                                    idleTimeout: .seconds(2)) {
                steady += 1
            }
            try check(steady == 40, "elements of a steady stream: \(steady)")
            // A stream that stops sending fails after its idle timeout, long before its deadline. (The first element
            // may take a second: a Kafka client looks up a topic it sends to for the first time.)
            var seen = 0
            let error = try await expectError(.timedOut) {
                for try await _ in try await fixture.client.sendStream(Probe.stallingStream, 3, timeout: .seconds(30),
                                                                        idleTimeout: .seconds(3)) {
                    seen += 1
                }
            }
            try check(error.message.contains("idle timeout"), "not an idle timeout: \(error.message)")
            try check(seen == 3, "elements before the stall: \(seen)")
            try check(fixture.client.pendingCalls == 0, "the stalled stream is still pending")
        }
    }

    static func wildcardRoutes(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let one = try await fixture.client.send(MessagePattern<NoPayload, String>("greet.bob"), NoPayload())
            try check(one == "one:greet.bob:greet.*", "greet.bob → \(one)")
            let rest = try await fixture.client.send(MessagePattern<NoPayload, String>("greet.bob.smith"), NoPayload())
            try check(rest == "rest:greet.bob.smith:greet.**", "greet.bob.smith → \(rest)")
            // `greet` has no segment for `*` to match: no route.
            let expected = harness.features.unknownPatterns.errorCode
            _ = try await expectError(expected) {
                _ = try await fixture.client.send("greet", json: nil, timeout: .seconds(1))
            }
        }
    }

    static func headersTravel(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let value = try await fixture.client.send(Probe.header, "x-tenant", headers: ["x-tenant": "acme"])
            try check(value == "acme", "header x-tenant arrived as \(String(describing: value))")
            let missing = try await fixture.client.send(Probe.header, "x-missing")
            try check(missing == nil, "an absent header arrived as \(String(describing: missing))")
        }
    }

    static func concurrentCalls(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let client = fixture.client
            let wrong = try await withThrowingTaskGroup(of: Bool.self) { group in
                for index in 0..<1_000 {
                    group.addTask {
                        let reply = try await client.send(ExampleService.sum, [index, index, 1])
                        return reply == 2 * index + 1
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 0 : 1) }
            }
            try check(wrong == 0, "\(wrong) of 1,000 concurrent calls got a wrong reply")
            try check(client.pendingCalls == 0, "calls left pending: \(client.pendingCalls)")
        }
    }

    static func handlersRunConcurrently(_ harness: any ConformanceHarness) async throws {
        try await withWorker(harness) { fixture in
            let client = fixture.client
            // The first call's handler waits until the second call's handler runs: a worker that handled one
            // message at a time (or ran a handler to completion before reading on) would time both out. Brokers may
            // deliver the second call first, or take seconds to route a new topic: it is sent again until the
            // first handler is found waiting.
            async let waited = client.send(Probe.awaitSignal, NoPayload(), timeout: .seconds(20))
            var wasWaiting = false
            let deadline = ContinuousClock.now + .seconds(15)
            while !wasWaiting, ContinuousClock.now < deadline {
                wasWaiting = try await client.send(Probe.signal, NoPayload(), timeout: deadline - .now)
                if !wasWaiting { try await Task.sleep(for: .milliseconds(20)) }
            }
            try check(wasWaiting, "the signal never found the first handler waiting")
            let result = try await waited
            try check(result == "signalled", "the waiting handler returned \(result)")
        }
    }

    static func gracefulShutdownDrains(_ harness: any ConformanceHarness) async throws {
        let audit = AuditLog()
        let sleeps = Completions()
        let server = try harness.makeServer()
        let worker = makeWorker(server, configuration: .init(gracefulShutdownTimeout: .seconds(5)), audit: audit,
                                sleeps: sleeps)
        let group = ServiceGroup(services: [worker], logger: quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await harness.waitUntilServing(server)
            let client = CourierClient(transport: try await harness.makeClient(for: server))
            defer { Task { await client.shutdown() } }
            let slow = Task { try await client.send(Probe.sleep, 300) }
            try await eventually("the slow call is in flight") { worker.inFlightHandlers == 1 }
            await group.triggerGracefulShutdown()
            let reply = try await slow.value
            try check(reply == "slept 300 ms", "the in-flight call replied \(reply)")
            try await tasks.next()  // the group returns once drained
            try check(sleeps.count == 1, "the handler did not finish")
        }
    }

    /// Polls `condition` every 10 ms for up to 15 s: it returns as soon as the condition holds, and a loaded machine
    /// running many suites at once was seen to deliver a Kafka request to its worker more than 3.5 s late.
    static func eventually(_ what: String, _ condition: @Sendable () -> Bool) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(15)
        while clock.now < deadline {
            if condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        throw ConformanceFailure(description: "timed out waiting for: \(what)")
    }
}
