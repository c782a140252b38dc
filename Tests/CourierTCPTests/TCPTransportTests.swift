//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample
import CourierTCP
import Dispatch
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization
import Testing

/// The TCP transport over real loopback sockets: exact NestJS bytes, hostile input, connection loss and reconnect.
@Suite struct TCPTransportTests {
    // MARK: Fixtures

    /// Test-only contracts served next to the example service.
    enum Probe {
        static let sleep = MessagePattern<Int, String>("probe.sleep")
        static let big = MessagePattern<String, Int>("probe.big")
        static let objectSum = MessagePattern<[Int], Int>(#"{"cmd":"sum"}"#)
    }

    struct Crash: Error {}

    /// A one-shot signal from a handler to the test.
    final class Signal: Sendable {
        private let stream: AsyncStream<Void>
        private let continuation: AsyncStream<Void>.Continuation
        init() { (stream, continuation) = AsyncStream.makeStream() }
        func fire() { continuation.yield() }
        func wait() async {
            for await _ in stream { return }
        }
    }

    final class Counter: Sendable {
        private let value = Atomic<Int>(0)
        func increment() { value.add(1, ordering: .relaxed) }
        var count: Int { value.load(ordering: .relaxed) }
    }

    /// The example service plus the probes.
    static func router(started: Signal = Signal(), bigCalls: Counter = Counter()) -> MessageRouter {
        var router = ExampleService.router()
        router.on(Probe.sleep) { milliseconds, _ in
            started.fire()
            try await Task.sleep(for: .milliseconds(milliseconds))
            return "slept \(milliseconds) ms"
        }
        router.on(Probe.big) { text, _ in
            bigCalls.increment()
            return text.count
        }
        router.on(Probe.objectSum) { numbers, _ in numbers.reduce(0, +) }
        router.onMessage("probe.echo") { value, _ in value }
        router.onMessage("probe.crash") { _, _ in throw Crash() }
        return router
    }

    /// A worker serving on a loopback port in a `ServiceGroup`, running in its own task.
    ///
    /// Tests stop it with a graceful shutdown, as a deployed worker stops, rather than by cancelling its task;
    /// cancelling the task is only the fallback when a test fails early.
    struct Worker {
        let service: Microservice
        let transport: TCPServerTransport
        let group: ServiceGroup
        let task: Task<Void, any Error>
        let port: Int

        /// Stops the worker: it stops accepting, gives in-flight handlers the graceful shutdown timeout, cancels
        /// those still running, closes its connections and returns.
        func stop() async {
            await group.triggerGracefulShutdown()
            _ = await task.result
        }
    }

    static var quietLogger: Logger {
        var logger = Logger(label: "courier.tests.tcp")
        logger.logLevel = .critical
        return logger
    }

    static func startWorker(
        router: MessageRouter = TCPTransportTests.router(),
        port: Int = 0,
        maxFrameLength: Int = 16 * 1024 * 1024,
        incompleteFrameTimeout: Duration? = .seconds(30),
        gracefulShutdownTimeout: Duration = .milliseconds(200),
        maxConcurrentHandlers: Int? = nil,
        runsHandlersOnEventLoop: Bool = true,
        stalledWriteTimeout: Duration? = .seconds(30)
    ) async throws -> Worker {
        var tcp = TCPConfiguration(
            host: "127.0.0.1",
            port: port,
            maxFrameLength: maxFrameLength,
            incompleteFrameTimeout: incompleteFrameTimeout,
            runsHandlersOnEventLoop: runsHandlersOnEventLoop
        )
        tcp.stalledWriteTimeout = stalledWriteTimeout
        let transport = TCPServerTransport(configuration: tcp)
        var configuration = MicroserviceConfiguration(gracefulShutdownTimeout: gracefulShutdownTimeout)
        if let maxConcurrentHandlers { configuration.maxConcurrentHandlers = maxConcurrentHandlers }
        let service = Microservice(router: router, transport: transport, configuration: configuration,
                                   logger: quietLogger)
        let group = ServiceGroup(services: [service], logger: quietLogger)
        let task = Task { try await group.run() }
        do {
            let address = try await transport.localAddress()
            return Worker(
                service: service,
                transport: transport,
                group: group,
                task: task,
                port: try #require(address.port)
            )
        } catch {
            task.cancel()
            throw error
        }
    }

    static func makeClient(
        port: Int,
        maxFrameLength: Int = 16 * 1024 * 1024,
        timeout: Duration = .seconds(10)
    ) -> CourierClient {
        CourierClient(
            transport: TCPClientTransport(
                configuration: .init(host: "127.0.0.1", port: port, maxFrameLength: maxFrameLength)
            ),
            configuration: .init(defaultTimeout: timeout)
        )
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

    /// Waits until `condition` holds, checking every few milliseconds, for at most `limit`.
    static func eventually(within limit: Duration = .seconds(3), _ condition: () -> Bool) async throws -> Bool {
        let clock = ContinuousClock()
        let end = clock.now + limit
        while clock.now < end {
            if condition() { return true }
            try await Task.sleep(for: .milliseconds(5))
        }
        return condition()
    }

    /// `<utf16 length>#<json>`.
    static func frame(_ json: String) -> String { "\(json.utf16.count)#\(json)" }

    // MARK: A raw TCP peer

    /// A plain TCP connection that sends arbitrary bytes and records what comes back. It closes itself after
    /// `lifetime`, so a test waiting for bytes that never come fails instead of hanging.
    final class RawConnection: Sendable {
        enum Event: Sendable {
            case bytes(ByteBuffer)
            case closed
        }

        final class Collector: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let continuation: AsyncStream<Event>.Continuation
            init(_ continuation: AsyncStream<Event>.Continuation) { self.continuation = continuation }

            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                continuation.yield(.bytes(unwrapInboundIn(data)))
            }

            func channelInactive(context: ChannelHandlerContext) {
                continuation.yield(.closed)
                continuation.finish()
                context.fireChannelInactive()
            }

            func errorCaught(context: ChannelHandlerContext, error: any Error) {
                context.close(promise: nil)
            }
        }

        let channel: any Channel
        private let events: AsyncStream<Event>

        private init(channel: any Channel, events: AsyncStream<Event>) {
            self.channel = channel
            self.events = events
        }

        static func connect(port: Int, lifetime: TimeAmount = .seconds(5)) async throws -> RawConnection {
            let (events, continuation) = AsyncStream<Event>.makeStream()
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(Collector(continuation))
                    }
                }
                .connect(host: "127.0.0.1", port: port)
                .get()
            channel.eventLoop.scheduleTask(in: lifetime) { channel.close(promise: nil) }
            return RawConnection(channel: channel, events: events)
        }

        func send(_ text: String) async throws {
            try await channel.writeAndFlush(ByteBuffer(string: text))
        }

        func close() async {
            try? await channel.close()
        }

        /// The one reader of what arrives.
        func reader() -> Reader { Reader(iterator: events.makeAsyncIterator()) }

        struct Reader {
            var iterator: AsyncStream<Event>.Iterator
            var received: [UInt8] = []
            var isClosed = false

            /// Reads until `count` bytes have arrived in total (or the connection closed); returns and consumes them.
            mutating func read(count: Int) async -> String {
                while received.count < count, !isClosed {
                    await next()
                }
                let taken = received.prefix(count)
                received.removeFirst(taken.count)
                return String(decoding: taken, as: UTF8.self)
            }

            /// Reads exactly the bytes of `expected` (as many as it has), for comparing.
            mutating func read(matching expected: String) async -> String {
                await read(count: expected.utf8.count)
            }

            /// Waits until the peer closes the connection; returns everything not read yet.
            mutating func readUntilClosed() async -> [UInt8] {
                while !isClosed { await next() }
                defer { received.removeAll() }
                return received
            }

            private mutating func next() async {
                switch await iterator.next(isolation: #isolation) {
                case .bytes(let buffer): received += buffer.readableBytesView
                case .closed, nil: isClosed = true
                }
            }
        }
    }

    // MARK: (a) Exact NestJS bytes

    @Test func rawRequestGetsTheExactNestJSReply() async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let raw = try await RawConnection.connect(port: worker.port)
        var reader = raw.reader()

        let request = #"{"pattern":"math.sum","data":[1,2,3],"id":"7c1d3b0e"}"#
        #expect(Self.frame(request) == "53#" + request)
        try await raw.send(Self.frame(request))
        let expected = #"48#{"response":6,"isDisposed":true,"id":"7c1d3b0e"}"#
        let received = await reader.read(matching: expected)
        #expect(received == expected)

        // The reference request vector, with an object pattern (§2), routes to the `{"cmd":"sum"}` handler.
        try await raw.send(#"56#{"pattern":{"cmd":"sum"},"data":[1,2,3],"id":"7c1d3b0e"}"#)
        let receivedAgain = await reader.read(matching: expected)
        #expect(receivedAgain == expected)

        await raw.close()
        await worker.stop()
    }

    /// One request frame and the exact reply frame NestJS would send for it.
    struct ExactReply: Sendable, CustomStringConvertible {
        let description: String
        let request: String
        let reply: String
    }

    static let exactReplies = [
        ExactReply(
            description: "unknown pattern",
            request: #"{"pattern":"no.such.pattern","data":null,"id":"7c1d3b0e"}"#,
            reply: #"110#{"id":"7c1d3b0e","status":"error","err":"There is no matching message handler defined in the remote service."}"#
        ),
        ExactReply(
            description: "non-Courier error",
            request: #"{"pattern":"probe.crash","data":null,"id":"7c1d3b0e"}"#,
            reply: #"94#{"err":{"status":"error","message":"Internal server error"},"isDisposed":true,"id":"7c1d3b0e"}"#
        ),
        ExactReply(
            description: "coded error, NestJS keys first",
            request: #"{"pattern":"math.fail","data":{"x":1},"id":"f1"}"#,
            reply: frame(
                #"{"err":{"status":"error","message":"math.fail always fails","code":422,"details":{"request":{"x":1}}},"isDisposed":true,"id":"f1"}"#
            )
        ),
    ]

    @Test(arguments: exactReplies)
    func repliesAreTheExactNestJSBytes(_ vector: ExactReply) async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let raw = try await RawConnection.connect(port: worker.port)
        var reader = raw.reader()
        try await raw.send(Self.frame(vector.request))
        let received = await reader.read(matching: vector.reply)
        #expect(received == vector.reply)
        await raw.close()
        await worker.stop()
    }

    @Test func countdownStreamsOneFramePerElementThenDisposal() async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let raw = try await RawConnection.connect(port: worker.port)
        var reader = raw.reader()
        try await raw.send(Self.frame(#"{"pattern":"math.countdown","data":3,"id":"c1"}"#))
        let expected = [
            #"{"response":3,"id":"c1"}"#,
            #"{"response":2,"id":"c1"}"#,
            #"{"response":1,"id":"c1"}"#,
            #"{"isDisposed":true,"id":"c1"}"#,
        ].map(Self.frame).joined()
        #expect(expected.hasPrefix(#"24#{"response":3,"id":"c1"}"#))
        let received = await reader.read(matching: expected)
        #expect(received == expected)

        // An empty countdown is a lone disposal packet.
        try await raw.send(Self.frame(#"{"pattern":"math.countdown","data":0,"id":"c2"}"#))
        let empty = #"29#{"isDisposed":true,"id":"c2"}"#
        let receivedAgain = await reader.read(matching: empty)
        #expect(receivedAgain == empty)
        await raw.close()
        await worker.stop()
    }

    @Test func multiByteTextIsFramedInUTF16Units() async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let raw = try await RawConnection.connect(port: worker.port)
        var reader = raw.reader()
        try await raw.send(Self.frame(#"{"pattern":"probe.echo","data":"héllo 😀 漢字","id":"u"}"#))
        let body = #"{"response":"héllo 😀 漢字","isDisposed":true,"id":"u"}"#
        let expected = Self.frame(body)
        #expect(expected.hasPrefix("\(body.utf16.count)#"))
        #expect(body.utf16.count != body.utf8.count)
        let received = await reader.read(matching: expected)
        #expect(received == expected)
        await raw.close()
        await worker.stop()
    }

    @Test func eventsGetNoReplyAndReplyPacketsSentToTheServerAreIgnored() async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let raw = try await RawConnection.connect(port: worker.port)
        var reader = raw.reader()
        // An event, a stray reply packet and then a request, in one write.
        try await raw.send(
            Self.frame(#"{"pattern":"audit.log","data":{"id":1}}"#)
                + Self.frame(#"{"response":1,"id":"stray"}"#)
                + Self.frame(#"{"pattern":"audit.count","data":null,"id":"n1"}"#)
        )
        // The only reply is the request's; the event was handled first on this connection.
        let expected = Self.frame(#"{"response":1,"isDisposed":true,"id":"n1"}"#)
        let received = await reader.read(matching: expected)
        #expect(received == expected)
        await raw.close()
        await worker.stop()
    }

    // MARK: (b) Hostile input closes only its own connection

    static let badInputs: [(String, String)] = [
        ("non-digit prefix", "abc#{}"),
        ("digit then letter", "4x#{}"),
        ("more than 12 digits", "1234567890123#"),
        ("invalid JSON body", "5#{nope"),
        ("JSON that is not an object", "7#[1,2,3]"),
        ("object that is not a packet", #"9#{"foo":1}"#),
        ("frame above maxFrameLength", "1001#{"),
    ]

    @Test(arguments: badInputs)
    func badInputClosesOnlyThatConnection(_ name: String, _ input: String) async throws {
        let worker = try await Self.startWorker(maxFrameLength: 1_000, incompleteFrameTimeout: .milliseconds(200))
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        // The well-behaved connection is open before the bad one arrives.
        #expect(try await client.send(ExampleService.sum, [1, 2]) == 3)
        let goodChannel = try await client.unwrap(as: (any Channel).self)

        // The raw connection closes itself after 20 s: the bound below tells the worker's close from that one.
        let bad = try await RawConnection.connect(port: worker.port, lifetime: .seconds(20))
        var reader = bad.reader()
        let clock = ContinuousClock()
        let start = clock.now
        try await bad.send(input)
        let leftover = await reader.readUntilClosed()
        #expect(leftover.isEmpty, "\(name): the server answered \(String(decoding: leftover, as: UTF8.self))")
        // Generous: in a CI run with every suite at once, these closes took up to 3.9 s.
        #expect(clock.now - start < .seconds(10), "\(name): closed only after \(clock.now - start)")

        // The good connection is still the same, still open, and still served.
        #expect(try await client.send(ExampleService.sum, [3, 4]) == 7)
        let stillGood = try await client.unwrap(as: (any Channel).self)
        #expect(stillGood === goodChannel)
        #expect(stillGood.isActive)
        await client.shutdown()
        await worker.stop()
    }

    @Test func halfSentFrameLeftIdleIsClosedAfterTheTimeout() async throws {
        let worker = try await Self.startWorker(maxFrameLength: 1_000, incompleteFrameTimeout: .milliseconds(200))
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        #expect(try await client.send(ExampleService.sum, [1, 2]) == 3)
        let goodChannel = try await client.unwrap(as: (any Channel).self)

        // The raw connection closes itself after 20 s: the bound below tells the worker's close from that one.
        let bad = try await RawConnection.connect(port: worker.port, lifetime: .seconds(20))
        var reader = bad.reader()
        let clock = ContinuousClock()
        let start = clock.now
        try await bad.send(#"60#{"pattern":"math.sum","#)
        let leftover = await reader.readUntilClosed()
        let elapsed = clock.now - start
        #expect(leftover.isEmpty)
        #expect(elapsed >= .milliseconds(150), "closed after \(elapsed), before the 200 ms timeout")
        // Generous: a CI run with every suite at once once took 3.4 s to close after the 200 ms timeout.
        #expect(elapsed < .seconds(10), "closed after \(elapsed)")

        #expect(try await client.send(ExampleService.sum, [5, 5]) == 10)
        let stillGood = try await client.unwrap(as: (any Channel).self)
        #expect(stillGood === goodChannel)
        await client.shutdown()
        await worker.stop()
    }

    // MARK: (c) Connection loss and reconnect

    /// A listener standing in for a worker that dies: it accepts connections, never replies, and hands each
    /// connection that has sent a request to the test, which then closes it.
    static func startSilentServer(port: Int = 0) async throws -> (listener: any Channel, requests: AsyncStream<any Channel>) {
        final class Capture: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let continuation: AsyncStream<any Channel>.Continuation
            init(_ continuation: AsyncStream<any Channel>.Continuation) { self.continuation = continuation }
            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                continuation.yield(context.channel)
            }
        }
        let (requests, continuation) = AsyncStream<any Channel>.makeStream()
        let listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Capture(continuation))
                }
            }
            .bind(host: "127.0.0.1", port: port)
            .get()
        return (listener, requests)
    }

    @Test func connectionDroppedByTheServerFailsThePendingCallAndTheNextCallReconnects() async throws {
        let (listener, requests) = try await Self.startSilentServer()
        let port = try #require(listener.localAddress?.port)
        let client = Self.makeClient(port: port, timeout: .seconds(20))

        let call = Task { try await client.send(Probe.sleep, 5_000) }
        var connections = requests.makeAsyncIterator()
        let serverSide = try #require(await connections.next())
        #expect(client.pendingCalls == 1)
        let firstChannel = try await client.unwrap(as: (any Channel).self)

        // The server closes the connection while the call waits for its reply.
        let clock = ContinuousClock()
        let start = clock.now
        try await serverSide.close()
        let error = await Self.courierError { _ = try await call.value }
        let elapsed = clock.now - start
        #expect(error?.code == .transportUnavailable, "\(String(describing: error))")
        #expect(error?.isRemote == false)
        // Well below the call's 20 s timeout, with room for a loaded machine.
        #expect(elapsed < .seconds(4), "the pending call failed only after \(elapsed)")
        #expect(client.pendingCalls == 0)

        // While nothing listens, calls fail fast.
        try await listener.close()
        let refused = await Self.courierError { _ = try await client.send(ExampleService.sum, [1]) }
        #expect(refused?.code == .transportUnavailable)

        // A worker on the same port: the same client reconnects on its next call.
        let worker = try await Self.startWorker(port: port)
        defer { worker.task.cancel() }
        #expect(worker.port == port)
        #expect(try await client.send(ExampleService.sum, [2, 3]) == 5)
        let secondChannel = try await client.unwrap(as: (any Channel).self)
        #expect(secondChannel !== firstChannel)
        #expect(secondChannel.isActive)
        await client.shutdown()
        await worker.stop()
    }

    @Test func stoppingTheWorkerFailsThePendingCallAndARestartedWorkerServesTheSameClient() async throws {
        let started = Signal()
        let router = Self.router(started: started)
        let first = try await Self.startWorker(router: router)
        let port = first.port
        let client = Self.makeClient(port: port, timeout: .seconds(20))
        #expect(try await client.send(ExampleService.sum, [1, 1]) == 2)
        let firstChannel = try await client.unwrap(as: (any Channel).self)

        let call = Task { try await client.send(Probe.sleep, 5_000) }
        await started.wait()
        #expect(client.pendingCalls == 1)

        // Stopping the worker: the slow handler outlives the graceful shutdown timeout, is cancelled and its
        // connection closed.
        let clock = ContinuousClock()
        let start = clock.now
        await first.stop()
        let error = await Self.courierError { _ = try await call.value }
        let elapsed = clock.now - start
        #expect(error?.code == .transportUnavailable, "\(String(describing: error))")
        // Well below the handler's 5 s and the call's 20 s, with room for a loaded machine (2.2 s seen in CI).
        #expect(elapsed < .seconds(4), "the pending call failed only after \(elapsed)")
        #expect(client.pendingCalls == 0)
        #expect(try await Self.eventually { !firstChannel.isActive }, "the worker left the connection open")
        // Its listener is gone: asking for it fails instead of waiting for ever.
        let stopped = await Self.courierError { _ = try await first.transport.localAddress() }
        #expect(stopped?.code == .transportUnavailable)

        // While nothing listens, calls fail fast.
        let refused = await Self.courierError { _ = try await client.send(ExampleService.sum, [1]) }
        #expect(refused?.code == .transportUnavailable)

        // A new worker on the same port: the same client reconnects on its next call.
        let second = try await Self.startWorker(router: router, port: port)
        defer { second.task.cancel() }
        #expect(second.port == port)
        #expect(try await client.send(ExampleService.sum, [2, 3]) == 5)
        let secondChannel = try await client.unwrap(as: (any Channel).self)
        #expect(secondChannel !== firstChannel)
        #expect(secondChannel.isActive)
        await client.shutdown()
        await second.stop()
    }

    // MARK: (d) Nothing listening

    @Test func aConnectionWhoseWorkerFallsBehindStopsReadingAndResumesWithoutLosingACall() async throws {
        // One handler at a time, 2 ms each: 300 calls sent at once pile up far past the 64 frames a connection
        // buffers, so it stops reading from its socket; it must read again as the handlers catch up.
        let worker = try await Self.startWorker(maxConcurrentHandlers: 1)
        let client = Self.makeClient(port: worker.port, timeout: .seconds(30))
        let replies = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<300 {
                group.addTask { try await client.send(Probe.sleep, 2) }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(replies.count == 300)
        #expect(replies.allSatisfy { $0 == "slept 2 ms" })
        await client.shutdown()
        await worker.stop()
    }

    @Test func aStreamWhoseCallerLeftStopsItsHandler() async throws {
        // A producer that never stops by itself: only its writes failing can end it. It rests 1 ms every 10 elements,
        // so that it does not keep the event loops other tests share busy (flooding a caller that is slow to close
        // made other tests' connections time out in one CI run).
        let endless = StreamPattern<Int, Int>("probe.endless")
        let ended = Signal()
        let sent = Counter()
        var router = Self.router()
        router.on(endless) { _, _, replies in
            defer { ended.fire() }
            while true {
                try await replies.send(sent.count)
                sent.increment()
                if sent.count.isMultiple(of: 10) { try await Task.sleep(for: .milliseconds(1)) }
            }
        }
        let worker = try await Self.startWorker(router: router)
        let client = Self.makeClient(port: worker.port, timeout: .seconds(30))
        var received = 0
        for try await _ in try await client.sendStream(endless, 0) {
            received += 1
            if received == 100 { break }
        }
        await client.shutdown()
        // The handler's writes fail once the connection is gone, which ends it.
        let stopped = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await ended.wait(); return true }
            group.addTask { try? await Task.sleep(for: .seconds(10)); return false }
            defer { group.cancelAll() }
            return await group.next() ?? false
        }
        #expect(stopped, "the handler was still streaming after its caller left (\(sent.count) elements sent)")
        await worker.stop()
    }

    @Test func clientWithoutServerFailsFast() async throws {
        // Find a free port, then make sure nothing listens on it.
        let probe = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(probe.localAddress?.port)
        try await probe.close()

        // A 60 s call timeout: three refused calls must take far less than one timeout (not a tight wall-clock
        // bound: a loaded CI machine once took 5.5 s).
        let client = Self.makeClient(port: port, timeout: .seconds(60))
        let clock = ContinuousClock()
        let start = clock.now
        let error = await Self.courierError { _ = try await client.send(ExampleService.sum, [1, 2]) }
        #expect(error?.code == .transportUnavailable)
        let emitError = await Self.courierError { try await client.emit(ExampleService.auditLog, ["x": 1]) }
        #expect(emitError?.code == .transportUnavailable)
        let streamError = await Self.courierError { _ = try await client.sendStream(ExampleService.countdown, 2) }
        #expect(streamError?.code == .transportUnavailable)
        #expect(clock.now - start < .seconds(20))
        #expect(client.pendingCalls == 0)
        await client.shutdown()
    }

    /// A one-thread event loop group whose loop is busy until the semaphore is signalled: a connection made on it
    /// stays in progress meanwhile.
    static func heldEventLoop() -> (MultiThreadedEventLoopGroup, DispatchSemaphore) {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let held = DispatchSemaphore(value: 0)
        group.next().execute { held.wait() }
        return (group, held)
    }

    /// Closing the transport while its connection is being made must not leave that connection open.
    @Test func aConnectionMadeWhileTheClientClosesIsClosedToo() async throws {
        final class Connections: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            let counts = Mutex((opened: 0, closed: 0))
            func channelActive(context: ChannelHandlerContext) { counts.withLock { $0.opened += 1 } }
            func channelInactive(context: ChannelHandlerContext) { counts.withLock { $0.closed += 1 } }
        }
        let connections = Connections()
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { $0.pipeline.addHandler(connections) }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)
        // The client's event loop is held up, so that its connect is surely still in progress at `close()`.
        let (clientLoops, held) = Self.heldEventLoop()
        let transport = TCPClientTransport(configuration: TCPConfiguration(host: "127.0.0.1", port: port),
                                           eventLoopGroup: clientLoops)
        let connecting = Task { try await transport.connect(replies: ReplyCorrelator()) }
        try await Task.sleep(for: .milliseconds(50))
        await transport.close()
        held.signal()
        let outcome = await connecting.result
        #expect((try? outcome.get()) == nil, "a connect that finishes after close() must fail")
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(5)
        while connections.counts.withLock({ $0.opened == 0 || $0.opened != $0.closed }), clock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        let counts = connections.counts.withLock { $0 }
        #expect(counts.opened == 1)
        #expect(counts.opened == counts.closed, "connections left open: \(counts.opened - counts.closed)")
        try await server.close()
        try await clientLoops.shutdownGracefully()
    }

    /// Connecting counts against a call's deadline, and a cancelled call stops waiting for the connection.
    @Test func aCallWaitsForItsConnectionNoLongerThanItsTimeoutOrItsTask() async throws {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0)
            .get()
        let port = try #require(server.localAddress?.port)
        // The client's event loop is held up, so its connection cannot be made until the test lets it go.
        let (clientLoops, held) = Self.heldEventLoop()
        let client = CourierClient(transport: TCPClientTransport(
            configuration: TCPConfiguration(host: "127.0.0.1", port: port), eventLoopGroup: clientLoops))
        let clock = ContinuousClock()
        let started = clock.now
        let timedOut = await Self.courierError {
            _ = try await client.send(ExampleService.sum, [1], timeout: .milliseconds(300))
        }
        #expect(timedOut?.code == .timedOut, "\(String(describing: timedOut))")
        #expect(clock.now - started < .seconds(5))

        let call = Task { try await client.send(ExampleService.sum, [1], timeout: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(100))
        call.cancel()
        let cancelled = await Self.courierError { _ = try await call.value }
        #expect(cancelled?.code == .cancelled, "\(String(describing: cancelled))")

        held.signal()
        await client.shutdown()
        try await server.close()
        try await clientLoops.shutdownGracefully()
    }

    // MARK: (e) Oversized outgoing requests

    @Test func oversizedRequestFailsLocallyWithPayloadTooLarge() async throws {
        let bigCalls = Counter()
        let worker = try await Self.startWorker(router: Self.router(bigCalls: bigCalls))
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port, maxFrameLength: 1_000)
        #expect(try await client.send(Probe.big, String(repeating: "a", count: 500)) == 500)
        #expect(bigCalls.count == 1)
        let channel = try await client.unwrap(as: (any Channel).self)

        let error = await Self.courierError {
            _ = try await client.send(Probe.big, String(repeating: "a", count: 2_000))
        }
        #expect(error?.code == .payloadTooLarge)
        #expect(error?.message.contains("probe.big") == true)
        #expect(error?.message.contains("1000") == true)
        let emitError = await Self.courierError {
            try await client.emit(ExampleService.auditLog, .string(String(repeating: "b", count: 2_000)))
        }
        #expect(emitError?.code == .payloadTooLarge)
        // A batch with one event too large sends none of them.
        let batchError = await Self.courierError {
            try await client.emitBatch(ExampleService.auditLog,
                                       [.string("small"), .string(String(repeating: "b", count: 2_000)), .string("small")])
        }
        #expect(batchError?.code == .payloadTooLarge)
        // The error says which event was too large, and that none was sent.
        #expect(batchError?.message.contains("1 of 3 'audit.log' events failed (event 2: ") == true)
        #expect(batchError?.message.contains("the other 2 were not sent; none accepted") == true)
        #expect(batchError?.details == ["failed": [1], "accepted": 0, "notSent": 2])
        #expect(client.pendingCalls == 0)

        // Nothing reached the worker, and the connection is untouched.
        #expect(try await client.send(ExampleService.sum, [1, 2]) == 3)
        #expect(bigCalls.count == 1)
        #expect(try await client.send(ExampleService.auditCount, NoPayload()) == 0)
        let same = try await client.unwrap(as: (any Channel).self)
        #expect(same === channel)
        #expect(same.isActive)
        await client.shutdown()
        await worker.stop()
    }

    // MARK: (f) Native objects

    @Test func unwrapReturnsTheActiveChannels() async throws {
        let worker = try await Self.startWorker()
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        let channel = try await client.unwrap(as: (any Channel).self)
        #expect(channel.isActive)
        #expect(try await client.send(ExampleService.sum, [1]) == 1)
        #expect(try await client.unwrap(as: (any Channel).self) === channel)
        #expect(channel.remoteAddress?.port == worker.port)

        let server = try await worker.service.unwrap(as: (any Channel).self)
        #expect(server.isActive)
        #expect(server.localAddress?.port == worker.port)

        let wrongType = await Self.courierError { _ = try await client.unwrap(as: Int.self) }
        #expect(wrongType?.code == .unprocessable)
        await client.shutdown()
        await worker.stop()
    }

    // MARK: (g) Synchronous handlers as frames are read

    final class Recorder: Sendable {
        private let values = Mutex<[Int]>([])
        func append(_ value: Int) { values.withLock { $0.append(value) } }
        var all: [Int] { values.withLock { $0 } }
    }

    @Test(arguments: [true, false])
    func synchronousHandlersRunAsTheirFramesAreReadOnTheEventLoop(onEventLoop: Bool) async throws {
        var router = Self.router()
        // Whether the handler runs inside any task: not when the connection's handler runs it as the frame is read.
        router.on(MessagePattern<NoPayload, Bool>("probe.in-task")) { _, _ in withUnsafeCurrentTask { $0 != nil } }
        let worker = try await Self.startWorker(router: router, runsHandlersOnEventLoop: onEventLoop)
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        // The first call may arrive before the connection's reader waits (then the reader takes it); after a reply,
        // the reader waits for the next frame.
        #expect(try await client.send(ExampleService.sum, [1, 2]) == 3)
        #expect(try await client.send(MessagePattern<NoPayload, Bool>("probe.in-task"), NoPayload()) == !onEventLoop)
        // A synchronous handler's error, and what the reader still takes: asynchronous handlers, unknown patterns.
        let crash = await Self.courierError { _ = try await client.send("probe.crash", json: nil) }
        #expect(crash?.message == "Internal server error")
        #expect(try await client.send(Probe.sleep, 1) == "slept 1 ms")
        let missing = await Self.courierError {
            _ = try await client.send(MessagePattern<Int, Int>("nobody.home"), 1)
        }
        #expect(missing?.code == .noHandler)
        await client.shutdown()
        await worker.stop()
    }

    @Test func handlersStartInArrivalOrderWhenSynchronousAndAsynchronousOnesAlternate() async throws {
        let order = Recorder()
        var router = Self.router()
        router.on(EventPattern<Int>("order.sync")) { value, _ in order.append(value) }
        router.on(EventPattern<Int>("order.async")) { value, _ in
            order.append(value)
            await Task.yield()
        }
        let worker = try await Self.startWorker(router: router)
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        let channel = try await client.unwrap(as: (any Channel).self)
        // One write, so that the worker reads many frames at once: an asynchronous handler's frame goes to the
        // connection's reader, and the synchronous ones after it must wait their turn rather than run as read.
        let count = 400
        var frames = ""
        for value in 0..<count {
            let pattern = value % 3 == 1 ? "order.async" : "order.sync"
            frames += Self.frame(#"{"pattern":"\#(pattern)","data":\#(value)}"#)
        }
        try await channel.writeAndFlush(ByteBuffer(string: frames))
        _ = try await Self.eventually(within: .seconds(5)) { order.all.count >= count }
        #expect(order.all == Array(0..<count))
        await client.shutdown()
        await worker.stop()
    }

    @Test func framesWrittenToTheUnwrappedChannelReachTheWorker() async throws {
        let received = Recorder()
        var router = Self.router()
        router.on(EventPattern<Int>("by.hand")) { value, _ in received.append(value) }
        let worker = try await Self.startWorker(router: router)
        defer { worker.task.cancel() }
        let client = Self.makeClient(port: worker.port)
        let channel = try await client.unwrap(as: (any Channel).self)
        // A NestJS event frame written by hand, next to the client's own calls.
        try await channel.writeAndFlush(ByteBuffer(string: Self.frame(#"{"pattern":"by.hand","data":7}"#)))
        #expect(try await Self.eventually { received.all == [7] })
        #expect(try await client.send(ExampleService.sum, [2, 3]) == 5)
        #expect(try await client.unwrap(as: (any Channel).self) === channel)
        await client.shutdown()
        await worker.stop()
    }
}
