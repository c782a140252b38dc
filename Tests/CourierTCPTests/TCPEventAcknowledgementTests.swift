//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTCP
import Dispatch
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// TCP emits with and without waiting for each event's write (`TCPConfiguration.awaitsEventAcknowledgement`).
@Suite struct TCPEventAcknowledgementTests {
    final class HandledCount: Sendable {
        let value = Atomic<Int>(0)
        var count: Int { value.load(ordering: .relaxed) }
    }

    final class Flag: Sendable {
        private let value = Atomic<Bool>(false)
        func set() { value.store(true, ordering: .relaxed) }
        var isSet: Bool { value.load(ordering: .relaxed) }
    }

    static let tick = EventPattern<Int>("acks.tick")

    static func countingRouter(_ handled: HandledCount) -> MessageRouter {
        var router = MessageRouter()
        router.on(tick) { _, _ in handled.value.add(1, ordering: .relaxed) }
        return router
    }

    static func client(port: Int, acknowledged: Bool, maxUnwritten: Int = 4096,
                       group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) -> CourierClient {
        var configuration = TCPConfiguration(host: "127.0.0.1", port: port)
        configuration.awaitsEventAcknowledgement = acknowledged
        configuration.maxUnwrittenEvents = maxUnwritten
        return CourierClient(transport: TCPClientTransport(configuration: configuration, eventLoopGroup: group,
                                                           logger: TCPTransportTests.quietLogger))
    }

    /// Holds up `loops`' only event loop until the returned semaphore is signalled: nothing is written meanwhile.
    static func hold(_ loops: MultiThreadedEventLoopGroup) -> DispatchSemaphore {
        let held = DispatchSemaphore(value: 0)
        loops.next().execute { held.wait() }
        return held
    }

    /// Runs `emits` in a task, so that emits that wait fail the test (through `returned`) instead of hanging it.
    static func started(_ emits: @escaping @Sendable () async throws -> Void) -> (task: Task<Void, any Error>, returned: Flag) {
        let returned = Flag()
        let task = Task {
            try await emits()
            returned.set()
        }
        return (task, returned)
    }

    static func waitUntil(_ handled: HandledCount, reaches count: Int) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while handled.count < count, clock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
    }

    @Test func urlOptionsSetAcknowledgementsAndTheirLimit() throws {
        let defaults = try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:3000"))
        #expect(defaults.awaitsEventAcknowledgement)
        #expect(defaults.maxUnwrittenEvents == 4096)

        let pipelined = try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:3000?eventAcks=false&maxUnwrittenEvents=16"))
        #expect(!pipelined.awaitsEventAcknowledgement)
        #expect(pipelined.maxUnwrittenEvents == 16)

        for bad in ["eventAcks=no", "maxUnwrittenEvents=0", "maxUnwrittenEvents=many"] {
            #expect(throws: CourierError.self) { try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:1?\(bad)")) }
        }
    }

    /// TCP has no credentials, one host and no path: a URL naming more would lose it silently (a second host that
    /// was meant as a fallback, a password that was meant to be checked), as a misspelt option would.
    @Test func urlPartsTCPCannotUseAreRejected() throws {
        for bad in ["tcp://alice:secret@127.0.0.1:3000", "tcp://127.0.0.1:3000/orders", "tcp://a:3000,b:3001"] {
            #expect(throws: CourierError.self, "\(bad)") { try TCPConfiguration(url: TransportURL(bad)) }
        }
        #expect(try TCPConfiguration(url: TransportURL("tcp://127.0.0.1:3000/")).port == 3000)
    }

    /// While the client's event loop is held up (so nothing can be written), an emit that awaits its write waits;
    /// without acknowledgements, emits return at once until `maxUnwrittenEvents` are queued, then wait. Every event
    /// arrives once the loop runs again.
    @Test func unacknowledgedEmitsReturnAtOnceUntilTheirLimitThenWait() async throws {
        let handled = HandledCount()
        let worker = try await TCPTransportTests.startWorker(router: Self.countingRouter(handled))
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let unacknowledged = Self.client(port: worker.port, acknowledged: false, maxUnwritten: 3, group: loops)
        let acknowledged = Self.client(port: worker.port, acknowledged: true, group: loops)
        // Connected before the loop is held.
        try await unacknowledged.emit(Self.tick, 0)
        try await acknowledged.emit(Self.tick, 0)
        try await Self.waitUntil(handled, reaches: 2)

        let held = Self.hold(loops)
        let withinLimit = Self.started { for value in 1...3 { try await unacknowledged.emit(Self.tick, value) } }
        let waiting = Self.started { try await acknowledged.emit(Self.tick, 5) }
        // Generous for a loaded machine: the three return at once unless they wait for the held loop.
        #expect(try await TCPTransportTests.eventually(within: .seconds(10)) { withinLimit.returned.isSet },
                "3 unacknowledged emits waited while nothing could be written")
        // Only now: started with the three, it could run first, return as one of the first three, and leave the
        // third of them waiting.
        let pastLimit = Self.started { try await unacknowledged.emit(Self.tick, 4) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(!pastLimit.returned.isSet, "the 4th unacknowledged emit returned while nothing was written")
        #expect(!waiting.returned.isSet, "an acknowledged emit returned before its write")
        #expect(handled.count == 2, "events were written while the client's loop was held")

        held.signal()
        for emits in [withinLimit, pastLimit, waiting] { try await emits.task.value }
        try await Self.waitUntil(handled, reaches: 7)
        #expect(handled.count == 7)

        // Far more than the limit go through, and the count of queued events goes back down as they are written:
        // with the loop held again, three emits return at once again.
        for value in 0..<200 { try await unacknowledged.emit(Self.tick, value) }
        try await unacknowledged.emitBatch(Self.tick, Array(0..<100))
        try await Self.waitUntil(handled, reaches: 307)
        let heldAgain = Self.hold(loops)
        let again = Self.started { for value in 1...3 { try await unacknowledged.emit(Self.tick, value) } }
        #expect(try await TCPTransportTests.eventually(within: .seconds(10)) { again.returned.isSet },
                "emits waited: the events written before were still counted as queued")
        heldAgain.signal()
        try await again.task.value
        try await Self.waitUntil(handled, reaches: 310)
        #expect(handled.count == 310)

        await unacknowledged.shutdown()
        await acknowledged.shutdown()
        await worker.stop()
        try await loops.shutdownGracefully()
    }

    /// A peer that stops reading fills the connection's buffers: unacknowledged emits then wait instead of queueing
    /// without bound, and fail once the connection is gone.
    @Test func unacknowledgedEmitsWaitWhileThePeerDoesNotRead() async throws {
        let connections = Mutex<[any Channel]>([])
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { channel in
                connections.withLock { $0.append(channel) }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)
        let client = Self.client(port: port, acknowledged: false)
        let big = EventPattern<String>("acks.big")
        let payload = String(repeating: "x", count: 256 * 1024)
        let emitted = HandledCount()
        let finished = Flag()
        // 400 events of 256 KiB: 100 MiB, far more than the socket buffers and NIO's high-water mark hold, and
        // within the 4,096 events the limit would let through if the connection's writability were not checked.
        let emitting = Task {
            for _ in 0..<400 {
                try await client.emit(big, payload)
                emitted.value.add(1, ordering: .relaxed)
            }
            finished.set()
        }
        try await Task.sleep(for: .seconds(2))
        #expect(!finished.isSet, "all 400 emits returned while the peer read nothing")
        #expect(emitted.count < 400)

        for channel in connections.withLock({ $0 }) { try? await channel.close() }
        try await server.close()
        let outcome = await emitting.result
        #expect((try? outcome.get()) == nil, "the waiting emit must fail once the connection is gone")
        await client.shutdown()
    }
}
