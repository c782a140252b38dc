//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import Logging
import NIOCore
import Synchronization
import Testing

/// Handlers registered as synchronous closures run in the transport's reading task where the transport starts
/// handlers immediately; asynchronous ones, and every handler elsewhere, get a task of their own.
@Suite struct SynchronousHandlerTests {
    /// Dispatches its messages one after another from its own task, recording that task, then idles.
    struct ReadingTransport: ServerTransport {
        let messages: [InboundMessage]
        let startImmediately: Bool
        /// Offer each message to `handleNowIfSynchronous` first, as TCP does for a frame read while its reader idles.
        var handleNowFirst = false
        let tasks: TaskLog
        var name: String { "reading" }

        func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
            tasks.record("reader")
            await withDiscardingTaskGroup { group in
                for message in messages {
                    if handleNowFirst, dispatcher.handleNowIfSynchronous(message) {
                        tasks.record("handled now: \(message.request.pattern)")
                        continue
                    }
                    await dispatcher.dispatch(message, in: &group, startImmediately: startImmediately)
                }
                while !Task.isCancelled { try? await Task.sleep(for: .seconds(1)) }
            }
        }

        func nativeServer() async throws -> any Sendable { "reading" }
    }

    /// The task each label ran in, and the replies written.
    final class TaskLog: Sendable {
        private let tasks = Mutex<[String: Int]>([:])
        private let written = Mutex<[String: String]>([:])

        func record(_ label: String) {
            let task = withUnsafeCurrentTask { $0?.hashValue }
            tasks.withLock { $0[label] = task }
        }

        func reply(_ id: String, _ text: String) { written.withLock { $0[id] = text } }
        var all: [String: Int] { tasks.withLock { $0 } }
        var replies: [String: String] { written.withLock { $0 } }
    }

    /// Records replies; with `takesFinalReplies`, final ones through `writeFinalWithoutWaiting` (as TCP's writer
    /// does), else through `write` (the default).
    struct RecordingWriter: ReplyWriter {
        let log: TaskLog
        let takesFinalReplies: Bool

        func write(_ reply: WireReply) async throws {
            log.reply(reply.correlationID, "awaited " + Self.text(reply))
        }

        func writeFinalWithoutWaiting(_ reply: WireReply) throws -> Bool {
            guard takesFinalReplies else { return false }
            log.reply(reply.correlationID, "queued " + Self.text(reply))
            return true
        }

        static func text(_ reply: WireReply) -> String {
            reply.response.map { String(buffer: $0) } ?? reply.error?.jsonText ?? "-"
        }
    }

    static func router(_ log: TaskLog) -> MessageRouter {
        var router = MessageRouter()
        // No `await` in the closure: the synchronous overload.
        router.on(MessagePattern<Int, Int>("sync.request")) { value, _ in
            log.record("sync request")
            return value + 1
        }
        router.on(MessagePattern<Int, Int>("sync.failure")) { _, _ in
            log.record("sync failure")
            throw CourierError(.unprocessable, "no")
        }
        router.on(EventPattern<Int>("sync.event")) { _, _ in log.record("sync event") }
        router.on(MessagePattern<Int, Int>("async.request")) { value, _ in
            await Task.yield()
            log.record("async request")
            return value + 2
        }
        return router
    }

    static func run(
        startImmediately: Bool,
        writerTakesFinalReplies: Bool = false,
        handleNowFirst: Bool = false
    ) async throws -> TaskLog {
        let log = TaskLog()
        let writer = RecordingWriter(log: log, takesFinalReplies: writerTakesFinalReplies)
        func message(_ pattern: String, id: String?) -> InboundMessage {
            InboundMessage(request: WireRequest(pattern: pattern, payload: ByteBuffer(string: "1"), correlationID: id),
                           metadata: TransportMetadata(transport: "reading"), replyWriter: id == nil ? nil : writer)
        }
        let transport = ReadingTransport(
            messages: [
                message("sync.request", id: "1"), message("sync.failure", id: "2"), message("sync.event", id: nil),
                message("async.request", id: "3"),
            ],
            startImmediately: startImmediately,
            handleNowFirst: handleNowFirst,
            tasks: log
        )
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let worker = Microservice(router: router(log), transport: transport, logger: logger)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(5)
            while log.all.count < (handleNowFirst ? 8 : 5) || log.replies.count < 3, clock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            group.cancelAll()
        }
        return log
    }

    @Test(arguments: [false, true])
    func synchronousHandlersRunInTheReaderWhenStartedImmediately(writerTakesFinalReplies: Bool) async throws {
        let log = try await Self.run(startImmediately: true, writerTakesFinalReplies: writerTakesFinalReplies)
        let tasks = log.all
        let reader = try #require(tasks["reader"])
        #expect(tasks["sync request"] == reader)
        #expect(tasks["sync failure"] == reader)
        #expect(tasks["sync event"] == reader)
        #expect(tasks["async request"] != nil && tasks["async request"] != reader)
        // Replies and errors are those of any handler; a synchronous handler's go through the writer's
        // `writeFinalWithoutWaiting` where it takes them.
        let how = writerTakesFinalReplies ? "queued " : "awaited "
        #expect(log.replies["1"] == how + "2")
        #expect(log.replies["2"]?.hasPrefix(how) == true)
        #expect(log.replies["2"]?.contains("\"code\":\(CourierError.Code.unprocessable.rawValue)") == true)
        // An asynchronous handler's reply goes through `write`.
        #expect(log.replies["3"] == "awaited 3")
    }

    @Test func everyHandlerGetsItsOwnTaskOtherwise() async throws {
        let log = try await Self.run(startImmediately: false)
        let tasks = log.all
        let reader = try #require(tasks["reader"])
        for label in ["sync request", "sync failure", "sync event", "async request"] {
            #expect(tasks[label] != nil && tasks[label] != reader, "\(label)")
        }
        #expect(log.replies["1"] == "awaited 2")
        #expect(log.replies["3"] == "awaited 3")
    }

    @Test(arguments: [false, true])
    func synchronousHandlersCanBeHandledAtOnceByTheTransport(writerTakesFinalReplies: Bool) async throws {
        let log = try await Self.run(startImmediately: true, writerTakesFinalReplies: writerTakesFinalReplies,
                                     handleNowFirst: true)
        let tasks = log.all
        let reader = try #require(tasks["reader"])
        // The synchronous ones ran at once, in the transport's task; the asynchronous one was dispatched.
        for pattern in ["sync.request", "sync.failure", "sync.event"] {
            #expect(tasks["handled now: \(pattern)"] == reader, "\(pattern)")
        }
        #expect(tasks["sync request"] == reader)
        #expect(tasks["handled now: async.request"] == nil)
        #expect(tasks["async request"] != nil && tasks["async request"] != reader)
        // A writer that cannot take a final reply at once gets it through `write`, from a task of its own.
        let how = writerTakesFinalReplies ? "queued " : "awaited "
        #expect(log.replies["1"] == how + "2")
        #expect(log.replies["2"]?.hasPrefix(how) == true)
        #expect(log.replies["3"] == "awaited 3")
    }
}
