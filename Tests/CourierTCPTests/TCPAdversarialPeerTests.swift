//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTCP
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Adversarial peers of a TCP worker, each bounded in time so that a hang fails instead of blocking.
@Suite struct TCPAdversarialPeerTests {
    typealias Fixtures = TCPTransportTests

    /// Runs `body`, and returns false if it has not finished within `limit` (the body is then left running).
    static func finishes(within limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        let done = Atomic<Bool>(false)
        let task = Task {
            await body()
            done.store(true, ordering: .relaxed)
        }
        _ = task
        let clock = ContinuousClock()
        let end = clock.now + limit
        while clock.now < end {
            if done.load(ordering: .relaxed) { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return done.load(ordering: .relaxed)
    }

    /// A peer that sends bytes and never reads what comes back (autoRead off).
    static func connectNonReadingPeer(port: Int) async throws -> any Channel {
        try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.so_rcvbuf), value: 16 * 1024)
            .connect(host: "127.0.0.1", port: port)
            .get()
    }

    @Test func gracefulShutdownFinishesWhileAStreamConsumerNeverReads() async throws {
        let flood = StreamPattern<Int, String>("probe.flood")
        let sent = Fixtures.Counter()
        var router = Fixtures.router()
        router.on(flood) { _, _, replies in
            let chunk = String(repeating: "x", count: 64 * 1024)
            for _ in 0..<100_000 {
                try await replies.send(chunk)
                sent.increment()
            }
        }
        let worker = try await Fixtures.startWorker(router: router, gracefulShutdownTimeout: .milliseconds(200))
        let peer = try await Self.connectNonReadingPeer(port: worker.port)
        try await peer.writeAndFlush(ByteBuffer(string: Fixtures.frame(#"{"pattern":"probe.flood","data":0,"id":"1"}"#)))
        // Wait until the handler is held up by the full socket: its count stops moving.
        var last = -1
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(100))
            let now = sent.count
            if now > 0, now == last { break }
            last = now
        }
        #expect(sent.count > 0 && sent.count < 100_000)
        let stopped = await Self.finishes(within: .seconds(8)) { await worker.stop() }
        #expect(stopped, "the worker never stopped: a handler waiting for a write to a peer that does not read")
        try? await peer.close()
        if !stopped { worker.task.cancel() }
    }

    /// A peer that asks for a stream and never reads (announcing no deadline, as NestJS callers do) holds the
    /// handler in `replies.send` once the socket is full. After `stalledWriteTimeout` the worker closes the
    /// connection, and the handler's `send` fails, which frees its slot; without it the handler waited forever.
    @Test func aStreamWriteThatStallsPastItsTimeoutClosesTheConnection() async throws {
        let flood = StreamPattern<Int, String>("probe.stall")
        let sent = Fixtures.Counter()
        let ended = Mutex<(any Error)?>(nil)
        var router = Fixtures.router()
        router.on(flood) { _, _, replies in
            let chunk = String(repeating: "x", count: 64 * 1024)
            do {
                for _ in 0..<100_000 {
                    try await replies.send(chunk)
                    sent.increment()
                }
            } catch {
                ended.withLock { $0 = error }
                throw error
            }
        }
        let worker = try await Fixtures.startWorker(router: router, stalledWriteTimeout: .milliseconds(300))
        defer { worker.task.cancel() }
        let peer = try await Self.connectNonReadingPeer(port: worker.port)
        try await peer.writeAndFlush(ByteBuffer(string: Fixtures.frame(#"{"pattern":"probe.stall","data":0,"id":"1"}"#)))
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(8)
        while ended.withLock({ $0 == nil }), clock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let error = ended.withLock { $0 }
        #expect((error as? CourierError)?.code == .transportUnavailable, "the handler ended with \(String(describing: error))")
        #expect(sent.count < 100_000)
        try? await peer.close()
    }

    /// A peer that sends requests and never reads the replies: once the worker's outbound buffer is full it stops
    /// reading the peer's requests, so the replies it holds stay bounded (it read and answered every request
    /// before, buffering every reply in memory). The kernel's socket buffers take the first few MB of replies
    /// (about 1,000 replies of 4 KiB here), so the peer sends far more requests than that.
    @Test func aPeerThatNeverReadsItsRepliesIsNoLongerRead() async throws {
        let calls = MessagePattern<Int, String>("probe.count")
        let handled = Fixtures.Counter()
        let reply = String(repeating: "r", count: 4096)
        var router = Fixtures.router()
        router.on(calls) { _, _ in
            handled.increment()
            return reply
        }
        let worker = try await Fixtures.startWorker(router: router)
        defer { worker.task.cancel() }
        let peer = try await Self.connectNonReadingPeer(port: worker.port)
        let requests = 20_000
        var bytes = ByteBuffer()
        for id in 0..<requests {
            bytes.writeString(Fixtures.frame(#"{"pattern":"probe.count","data":1,"id":"\#(id)"}"#))
        }
        // Not awaited: the worker is expected to stop reading, and then this write never completes.
        peer.writeAndFlush(bytes, promise: nil)
        // Until the count stops moving.
        var last = -1
        for _ in 0..<100 {
            try await Task.sleep(for: .milliseconds(100))
            if handled.count == last, last > 0 { break }
            last = handled.count
        }
        #expect(handled.count > 0)
        #expect(handled.count < requests / 2, "the worker read \(handled.count) of \(requests) requests whose replies no one read")
        try? await peer.close()
    }
}
