//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTesting
import Synchronization
import Testing

/// What a handler's context and stream writer promise: deadlines, extensions and the end of a stream.
@Suite struct HandlerContextTests {
    static let outer = MessagePattern<NoPayload, String>("context.outer")
    static let inner = MessagePattern<NoPayload, String>("context.inner")
    static let lateStream = StreamPattern<NoPayload, Int>("context.late-stream")
    static let keptStream = StreamPattern<NoPayload, Int>("context.kept-stream")

    /// Polls `condition` until it holds or `limit` passes.
    static func eventually(within limit: Duration = .seconds(10), _ condition: () -> Bool) async throws {
        let clock = ContinuousClock()
        let end = clock.now + limit
        while !condition(), clock.now < end { try await Task.sleep(for: .milliseconds(10)) }
    }

    /// A downstream handler's deadline extension must not make an onward call wait past the calling handler's
    /// own deadline.
    @Test(.timeLimit(.minutes(1))) func anOnwardCallIsNotExtendedPastTheHandlersDeadline() async throws {
        let memory = InMemoryTransport()
        let onwardClient = CourierClient(transport: memory.makeClient())
        let onwardTook = Mutex<Duration?>(nil)
        var router = MessageRouter()
        router.on(Self.outer) { _, context in
            let clock = ContinuousClock()
            let start = clock.now
            let result = await capture { try await context.client!.send(Self.inner, NoPayload()) }
            onwardTook.withLock { $0 = clock.now - start }
            return "\(result)"
        }
        router.on(Self.inner) { _, context in
            // Asks its caller (the outer handler's onward call) to wait 10 s more, and takes 5 s.
            try await context.extendDeadline(by: .seconds(10))
            try await Task.sleep(for: .seconds(5))
            return "late"
        }
        let worker = Microservice(router: router, transport: memory.server, client: onwardClient,
                                  logger: MicroserviceTests.quietLogger)
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            // Connected first: connecting counts against a call's deadline, and on a loaded machine it could use
            // up the outer call's 500 ms before its request was ever sent.
            try await client.connect()
            try await onwardClient.connect()
            // The outer handler has 500 ms; its onward call must give up then, not wait for the 5 s reply.
            _ = await capture { try await client.send(Self.outer, NoPayload(), timeout: .milliseconds(500)) }
            // Generous for a loaded machine (a CI run with every suite at once saw no outcome within 10 s).
            try await Self.eventually(within: .seconds(40)) { onwardTook.withLock { $0 } != nil }
            let took = try #require(onwardTook.withLock { $0 })
            #expect(took < .milliseconds(2_500), "the onward call waited \(took), past its handler's 500 ms")
            group.cancelAll()
        }
        await client.shutdown()
        await onwardClient.shutdown()
    }
    /// Once the caller's deadline has passed, it no longer listens: an extension asked for then cannot bring it back,
    /// so the handler's next `replies.send` must still fail (as the docs promise for a caller that has gone).
    @Test(.timeLimit(.minutes(1))) func anExtensionAfterTheDeadlineDoesNotReviveTheStream() async throws {
        let memory = InMemoryTransport()
        let outcome = Mutex<String?>(nil)
        var router = MessageRouter()
        router.on(Self.lateStream) { _, context, replies in
            outcome.withLock { $0 = "started" }
            // Past the caller's 1 s. Not `try`: a cancelled sleep would end the handler without an outcome.
            try? await Task.sleep(for: .milliseconds(1_500))
            do {
                try await context.extendDeadline(by: .seconds(10))
                for value in 0..<20 {
                    try await replies.send(value)
                    try await Task.sleep(for: .milliseconds(5))
                }
                outcome.withLock { $0 = "sent every element to a caller that had gone" }
            } catch let error as CourierError {
                outcome.withLock { $0 = "stopped: \(error.code)" }
            }
        }
        let worker = Microservice(router: router, transport: memory.server, logger: MicroserviceTests.quietLogger)
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            let result = await capture {
                for try await _ in try await client.sendStream(Self.lateStream, NoPayload(), timeout: .seconds(1)) {}
            }
            #expect((result.failureCode) == .timedOut, "\(result)")
            try await Self.eventually(within: .seconds(30)) { (outcome.withLock { $0 } ?? "started") != "started" }
            let seen = outcome.withLock { $0 } ?? "the handler never started"
            #expect(seen.hasPrefix("stopped"), "\(seen)")
            group.cancelAll()
        }
        await client.shutdown()
    }

    /// A stream ends when its handler returns: a writer kept beyond that must not send into the finished call as
    /// though the caller still listened.
    @Test(.timeLimit(.minutes(1))) func sendingAfterTheStreamEndedFails() async throws {
        let memory = InMemoryTransport()
        let kept = Mutex<StreamWriter<Int>?>(nil)
        var router = MessageRouter()
        router.on(Self.keptStream) { _, _, replies in
            kept.withLock { $0 = replies }
            try await replies.send(1)
        }
        let worker = Microservice(router: router, transport: memory.server, logger: MicroserviceTests.quietLogger)
        let client = CourierClient(transport: memory.makeClient())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            await memory.waitUntilServing()
            var seen: [Int] = []
            for try await value in try await client.sendStream(Self.keptStream, NoPayload(), timeout: .seconds(10)) {
                seen.append(value)
            }
            #expect(seen == [1])
            let writer = try #require(kept.withLock { $0 })
            await #expect(throws: CourierError.self) { try await writer.send(2) }
            group.cancelAll()
        }
        await client.shutdown()
    }
}

extension Result {
    /// The code of a `CourierError` failure.
    var failureCode: CourierError.Code? {
        guard case .failure(let error) = self else { return nil }
        return (error as? CourierError)?.code
    }
}
