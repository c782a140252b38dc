//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Testing

/// The acknowledgement hook transports with redelivery rely on (Kafka offsets, Redis Streams XACK).
@Suite struct HandlingOutcomeTests {
    /// A server transport that dispatches a fixed list of messages, then idles until cancelled.
    struct ScriptedTransport: ServerTransport {
        let messages: [InboundMessage]
        /// Dispatch as a transport reading on its handlers' event loop does (synchronous handlers then run in place).
        var startImmediately = false
        var name: String { "scripted" }

        func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
            await withDiscardingTaskGroup { group in
                for message in messages {
                    await dispatcher.dispatch(message, in: &group, startImmediately: startImmediately)
                }
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(1)) }
            }
        }

        func nativeServer() async throws -> any Sendable { "scripted" }
    }

    struct DiscardingWriter: ReplyWriter {
        func write(_ reply: WireReply) async throws {}
    }

    struct FailingWriter: ReplyWriter {
        func write(_ reply: WireReply) async throws { throw CourierError.unavailable("the caller is gone") }
    }

    /// Outcomes by message label.
    final class Outcomes: Sendable {
        private let values = Mutex<[String: String]>([:])
        func record(_ label: String) -> @Sendable (HandlingOutcome) -> Void {
            { outcome in self.values.withLock { $0[label] = outcome.description } }
        }
        var all: [String: String] { values.withLock { $0 } }
    }

    static func message(
        _ pattern: String,
        id: String? = nil,
        writer: (any ReplyWriter)? = nil,
        outcomes: Outcomes,
        label: String
    ) -> InboundMessage {
        InboundMessage(
            request: WireRequest(pattern: pattern, payload: ByteBuffer(string: "1"), correlationID: id),
            metadata: TransportMetadata(transport: "scripted"),
            replyWriter: writer,
            onHandled: outcomes.record(label)
        )
    }

    static var router: MessageRouter {
        var router = MessageRouter()
        router.on(EventPattern<Int>("ok.event")) { _, _ in }
        router.on(EventPattern<Int>("bad.event")) { _, _ in throw CourierError(.unprocessable, "no") }
        router.on(MessagePattern<Int, Int>("ok.request")) { value, _ in value + 1 }
        router.on(MessagePattern<Int, Int>("slow.request")) { value, _ in
            try await Task.sleep(for: .seconds(30))
            return value
        }
        return router
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    @Test(arguments: [false, true])
    func everyMessageReportsHowItWent(startImmediately: Bool) async throws {
        let outcomes = Outcomes()
        let messages = [
            Self.message("ok.event", outcomes: outcomes, label: "ok event"),
            Self.message("bad.event", outcomes: outcomes, label: "failing event"),
            Self.message("nobody.home", id: "1", writer: DiscardingWriter(), outcomes: outcomes, label: "unknown"),
            Self.message("ok.request", id: "2", writer: DiscardingWriter(), outcomes: outcomes, label: "ok request"),
            Self.message("ok.request", id: "3", writer: FailingWriter(), outcomes: outcomes, label: "reply lost"),
            Self.message("ok.request", id: "4", writer: DiscardingWriter(), outcomes: outcomes, label: "bad payload"),
        ]
        var broken = messages
        broken[5].request.payload = ByteBuffer(string: "\"not a number\"")
        let worker = Microservice(router: Self.router, transport: ScriptedTransport(messages: broken, startImmediately: startImmediately),
                                  logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let clock = ContinuousClock()
            // Generous for a loaded machine: the loop ends as soon as all six have reported.
            let deadline = clock.now + .seconds(20)
            while outcomes.all.count < 6, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            group.cancelAll()
        }
        let all = outcomes.all
        #expect(all["ok event"] == "succeeded")
        #expect(all["failing event"]?.hasPrefix("failed(") == true)
        #expect(all["unknown"] == "unhandled")
        #expect(all["ok request"] == "succeeded")
        #expect(all["reply lost"] == "abandoned")
        #expect(all["bad payload"]?.hasPrefix("failed(decodingFailed(400)") == true)
    }

    @Test func handlersCancelledByShutdownAreAbandoned() async throws {
        let outcomes = Outcomes()
        let messages = [
            Self.message("slow.request", id: "1", writer: DiscardingWriter(), outcomes: outcomes, label: "slow")
        ]
        let worker = Microservice(
            router: Self.router,
            transport: ScriptedTransport(messages: messages),
            configuration: MicroserviceConfiguration(gracefulShutdownTimeout: .milliseconds(100)),
            logger: Self.quietLogger
        )
        let group = ServiceGroup(services: [worker], logger: Self.quietLogger)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            while worker.inFlightHandlers == 0 { try await Task.sleep(for: .milliseconds(5)) }
            await group.triggerGracefulShutdown()
            try await tasks.next()
        }
        #expect(outcomes.all["slow"] == "abandoned")
    }
}
