//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization
import NIOEmbedded
import Testing

@testable import CourierRedis

/// The handler's matching, timeout and failure rules, on an `EmbeddedChannel` with a fake clock.
@Suite struct RedisChannelHandlerTests {
    /// A connected embedded channel with the decoder and the handler, and what the handler reported on closing.
    private final class Harness {
        let channel = EmbeddedChannel()
        var closeReasons: [CourierError] = []

        init() throws {
            let handler = RedisChannelHandler(endpoint: "redis://test:6379", pushes: nil) { [unowned self] reason in
                self.closeReasons.append(reason)
            }
            try channel.pipeline.syncOperations.addHandlers(ByteToMessageHandler(RESPReplyDecoder()), handler)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6379)).wait()
        }

        /// Writes a command; returns a box that holds its outcome once it completes.
        func send(_ arguments: [RESPArgument], timeout: Duration? = nil) throws -> Outcome {
            let promise = channel.eventLoop.makePromise(of: RESPValue.self)
            let outcome = Outcome(promise: promise)
            try channel.writeOutbound(RedisRequest(arguments, timeout: timeout, promise: promise))
            _ = try channel.readOutbound(as: ByteBuffer.self)
            return outcome
        }

        func reply(_ wire: String) throws {
            try channel.writeInbound(ByteBuffer(string: wire))
        }
    }

    private final class Outcome {
        let promise: EventLoopPromise<RESPValue>
        var result: Result<RESPValue, any Error>?

        init(promise: EventLoopPromise<RESPValue>) {
            self.promise = promise
            promise.futureResult.assumeIsolated().whenComplete { self.result = $0 }
        }

        var value: RESPValue? { try? result?.get() }
        var courierError: CourierError? {
            guard case .failure(let error) = result else { return nil }
            return error as? CourierError
        }
    }

    /// A subscriber's sink outlives its connections. A replaced connection's handler may be removed after its
    /// successor's was added; it must leave the successor's way to resume reading in place, or a subscriber that
    /// held a read back would never read again.
    @Test func aReplacedConnectionLeavesItsSuccessorsResumeReading() throws {
        let loop = EmbeddedEventLoop()
        let (sink, messages) = RedisPubSubSink.make(bufferSize: 4, eventLoop: loop)
        let old = EmbeddedChannel(loop: loop)
        let new = EmbeddedChannel(loop: loop)
        try old.pipeline.syncOperations.addHandler(RedisChannelHandler(endpoint: "redis://old:6379", pushes: sink) { _ in })
        try new.pipeline.syncOperations.addHandler(RedisChannelHandler(endpoint: "redis://new:6379", pushes: sink) { _ in })
        _ = try old.finish(acceptAlreadyClosed: true)
        #expect(sink.resumeReading != nil)
        _ = try new.finish(acceptAlreadyClosed: true)
        #expect(sink.resumeReading == nil)
        withExtendedLifetime(messages) {}
    }

    @Test func repliesAreMatchedToCommandsInOrder() throws {
        let harness = try Harness()
        let first = try harness.send(["GET", "a"])
        let second = try harness.send(["GET", "b"])
        try harness.reply("$1\r\n1\r\n")
        #expect(first.value == .bulkString(ByteBuffer(string: "1")))
        #expect(second.result == nil)
        try harness.reply("$1\r\n2\r\n")
        #expect(second.value == .bulkString(ByteBuffer(string: "2")))
    }

    @Test func errorReplyFailsOnlyItsCommand() throws {
        let harness = try Harness()
        let failing = try harness.send(["LPUSH", "string-key", "x"])
        let next = try harness.send(["PING"])
        try harness.reply("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+PONG\r\n")
        guard case .failure(let error as RedisError) = failing.result else {
            Issue.record("expected a RedisError, got \(String(describing: failing.result))")
            return
        }
        #expect(error.kind == "WRONGTYPE")
        #expect(CourierError(error).code == .remote)
        #expect(next.value == .simpleString("PONG"))
        #expect(harness.channel.isActive)
    }

    @Test func aCancelledCallerKeepsItsSlotSoLaterRepliesStayMatched() throws {
        let harness = try Harness()
        let cancelled = try harness.send(["BLPOP", "list", "5"])
        let next = try harness.send(["GET", "k"])
        cancelled.promise.fail(CourierError(.cancelled, "gave up"))
        #expect(cancelled.courierError?.code == .cancelled)
        try harness.reply("*2\r\n$4\r\nlist\r\n$1\r\nx\r\n")  // BLPOP's late reply: discarded
        #expect(next.result == nil)
        try harness.reply("$5\r\nvalue\r\n")
        #expect(next.value == .bulkString(ByteBuffer(string: "value")))
        #expect(cancelled.courierError?.code == .cancelled)
    }

    @Test func aTimedOutCommandClosesTheConnectionAndFailsTheCommandsBehindIt() throws {
        let harness = try Harness()
        let slow = try harness.send(["BLPOP", "list", "5"], timeout: .milliseconds(200))
        let behind = try harness.send(["GET", "k"])
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(199))
        #expect(slow.result == nil)
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(slow.courierError?.code == .timedOut)
        #expect(slow.courierError?.message.contains("'BLPOP' got no reply within") == true)
        #expect(behind.courierError?.code == .transportUnavailable)
        #expect(behind.courierError?.message.contains("could no longer be matched") == true)
        #expect(!harness.channel.isActive)
        #expect(harness.closeReasons.count == 1)
    }

    @Test func aTimedOutCommandCompletesOnceWhenTheConnectionCloses() throws {
        let harness = try Harness()
        final class Outcomes: Sendable { let list = Mutex<[String]>([]) }
        let outcomes = Outcomes()
        for (name, timeout) in [("slow", Duration.milliseconds(200)), ("behind", nil)] {
            let request = try RedisRequest(["GET", RESPArgument(name)], timeout: timeout, completion: .callback { result in
                outcomes.list.withLock { $0.append("\(name): \((try? result.get()) == nil ? "failed" : "answered")") }
            })
            try harness.channel.writeOutbound(request)
            _ = try harness.channel.readOutbound(as: ByteBuffer.self)
        }
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!harness.channel.isActive)
        // Each completion ran once: the timed-out command is not failed again as the connection closes.
        #expect(outcomes.list.withLock { $0 } == ["slow: failed", "behind: failed"])
    }

    @Test func aLaterDeadlineDoesNotHideAnEarlierOne() throws {
        let harness = try Harness()
        let long = try harness.send(["GET", "a"], timeout: .seconds(10))
        let short = try harness.send(["GET", "b"], timeout: .milliseconds(100))
        harness.channel.embeddedEventLoop.advanceTime(by: .milliseconds(100))
        #expect(short.courierError?.code == .timedOut)
        #expect(long.courierError?.code == .transportUnavailable)
    }

    @Test func answeredCommandsDoNotTimeOut() throws {
        let harness = try Harness()
        let answered = try harness.send(["PING"], timeout: .milliseconds(100))
        try harness.reply("+PONG\r\n")
        harness.channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(answered.value == .simpleString("PONG"))
        #expect(harness.channel.isActive)
    }

    @Test func malformedInputClosesTheConnectionWithAClearError() throws {
        let harness = try Harness()
        let pending = try harness.send(["GET", "k"])
        try? harness.reply("?this is not RESP\r\n")
        #expect(pending.courierError?.code == .transportUnavailable)
        #expect(pending.courierError?.message.contains("malformed reply from Redis: Protocol error") == true)
        #expect(!harness.channel.isActive)
        #expect(harness.closeReasons.map(\.code) == [.transportUnavailable])
    }

    @Test func aReplyNobodyWaitsForClosesTheConnection() throws {
        let harness = try Harness()
        try harness.reply("+OK\r\n")
        #expect(!harness.channel.isActive)
        #expect(harness.closeReasons.first?.message.contains("no command waiting") == true)
    }

    @Test func connectionLossFailsEveryPendingCommandAtOnce() throws {
        let harness = try Harness()
        let outcomes = try (0..<100).map { _ in try harness.send(["PING"]) }
        harness.channel.pipeline.fireChannelInactive()
        #expect(outcomes.allSatisfy { $0.courierError?.code == .transportUnavailable })
        #expect(harness.closeReasons.count == 1)
        let late = harness.channel.eventLoop.makePromise(of: RESPValue.self)
        let lateOutcome = Outcome(promise: late)
        _ = try? harness.channel.writeOutbound(RedisRequest(["PING"], timeout: nil, promise: late))
        #expect(lateOutcome.courierError?.code == .transportUnavailable)
    }

    @Test func subscriptionWaitsForOneConfirmationPerName() throws {
        let harness = try Harness()
        let promise = harness.channel.eventLoop.makePromise(of: RESPValue.self)
        let outcome = Outcome(promise: promise)
        try harness.channel.writeOutbound(
            RedisRequest(
                ["SUBSCRIBE", "a", "b"],
                expectation: .confirmations(kind: "subscribe", count: 2),
                timeout: nil,
                promise: promise
            )
        )
        try harness.reply("*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n")
        #expect(outcome.result == nil)
        try harness.reply("*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n")
        #expect(outcome.value?.array?.last == .integer(2))
    }
}
