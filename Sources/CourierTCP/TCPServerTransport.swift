//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import NIOPosix
import Synchronization

/// The worker side of the TCP transport, on NestJS's wire format (or Ascender's: ``TCPConfiguration/format``).
///
/// It listens on ``TCPConfiguration/host``:``TCPConfiguration/port``, reads frames from every connection, runs requests concurrently (many per connection, matched by `id`) and writes replies back on the
/// same connection. A malformed, oversized or half-sent frame closes only its own connection, with a logged
/// reason. `nativeServer()` returns the listening NIO `Channel`.
public final class TCPServerTransport: ServerTransport {
    public var name: String { "tcp" }

    private let configuration: TCPConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let listener = Mutex<ListenerState>(ListenerState())

    private struct ListenerState {
        var channel: (any Channel)?
        var failure: (any Error)?
        var waiters: [CheckedContinuation<any Channel, any Error>] = []
    }

    /// Creates a TCP server transport.
    ///
    /// - Parameters:
    ///   - configuration: Where to listen and the frame limits.
    ///   - eventLoopGroup: The NIO event loops to use. Default: the process-wide singleton group.
    public init(
        configuration: TCPConfiguration = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
    }

    /// Creates a TCP server transport listening on `host:port`.
    public convenience init(host: String, port: Int) {
        self.init(configuration: TCPConfiguration(host: host, port: port))
    }

    /// The address the server listens on, once it does (useful with port `0`).
    public func localAddress() async throws -> SocketAddress {
        let channel = try await listeningChannel()
        guard let address = channel.localAddress else {
            throw CourierError.unavailable("the TCP listener has no local address")
        }
        return address
    }

    public func nativeServer() async throws -> any Sendable {
        try await listeningChannel()
    }

    public func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
        let configuration = self.configuration
        let format = configuration.format
        let maxFrameLength = configuration.maxFrameLength
        let server: NIOAsyncChannel<Connection, Never>
        do {
            server = try await ServerBootstrap(group: eventLoopGroup)
                .serverChannelOption(.backlog, value: 256)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.socketOption(.so_keepalive), value: 1)
                .bind(host: configuration.host, port: configuration.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        // No more requests are read while replies cannot be written (NIO's high-water mark): a
                        // peer that sends and never reads would otherwise fill the worker's memory with replies.
                        try channel.pipeline.syncOperations.addHandler(BackPressureHandler())
                        try configuration.format.addDecoder(to: channel.pipeline.syncOperations,
                                                            configuration: configuration)
                        let writer = TCPReplyWriter(writer: WriteCoalescer(channel: channel), format: format,
                                                    maxFrameLength: maxFrameLength,
                                                    stalledWriteTimeout: configuration.stalledWriteTimeout)
                        let metadata = TransportMetadata(transport: "tcp",
                                                         remoteAddress: channel.remoteAddress?.description)
                        // On the event loop, a synchronous handler runs as its frame is read, while the connection's
                        // reader waits idle: that spares waking the reader task per request.
                        let handleNow = configuration.runsHandlersOnEventLoop
                            ? Self.immediateHandling(format: format, dispatcher: dispatcher, metadata: metadata,
                                                     writer: writer)
                            : nil
                        return Connection(channel: channel, writer: writer, metadata: metadata,
                                          frames: try InboundFrameQueue.install(on: channel, handleNow: handleNow))
                    }
                }
        } catch {
            let failure = CourierError.unavailable(
                "cannot listen on \(configuration.host):\(configuration.port): \(error)",
                underlying: error
            )
            publish(.failure(failure))
            throw failure
        }
        publish(.success(server.channel))
        defer {
            // Asked after the worker stopped, the listening channel is gone for good (until `serve` runs again).
            let stopped = CourierError.unavailable("the TCP worker on \(configuration.host):\(configuration.port) stopped")
            listener.withLock { state in
                state.channel = nil
                state.failure = stopped
            }
        }

        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                // Stop taking new connections as soon as the service drains.
                await dispatcher.draining()
                try? await server.channel.close()
            }
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    // The connection's reader and its handlers run on the connection's event loop, if so configured.
                    let executor = configuration.runsHandlersOnEventLoop
                        ? EventLoopTaskExecutor(connection.channel.eventLoop) : nil
                    group.addTask(executorPreference: executor) {
                        await Self.serve(connection: connection, dispatcher: dispatcher, format: format,
                                         onEventLoop: executor != nil)
                    }
                }
            }
        }
    }

    /// An accepted connection, where its replies go, and the frames it receives.
    private struct Connection: Sendable {
        let channel: any Channel
        let writer: TCPReplyWriter
        let metadata: TransportMetadata
        let frames: InboundFrameQueue
    }

    /// What one connection does with a frame as it is read: handles it if it is a request or event for a synchronous
    /// handler that can run now. Anything unusual (a malformed packet, a reply) is left to the reader, which reports
    /// it.
    private static func immediateHandling(
        format: TCPWireFormat,
        dispatcher: any InboundDispatcher,
        metadata: TransportMetadata,
        writer: TCPReplyWriter
    ) -> @Sendable (ByteBuffer) -> InboundFrameQueue.Immediate {
        { frame in
            guard let packet = try? format.decode(frame) else { return .declined }
            guard case .request(let request) = packet else { return .decoded(packet) }
            let message = InboundMessage(request: request, metadata: metadata,
                                         replyWriter: request.isEvent ? nil : writer)
            return dispatcher.handleNowIfSynchronous(message) ? .handled : .decoded(packet)
        }
    }

    /// Reads one connection's frames and dispatches them until it closes or the service stops.
    private static func serve(
        connection: Connection,
        dispatcher: any InboundDispatcher,
        format: TCPWireFormat,
        onEventLoop: Bool
    ) async {
        let channel = connection.channel
        let metadata = connection.metadata
        let writer = connection.writer
        // Handlers are children of this group, so the connection stays open until they have replied.
        await withDiscardingTaskGroup { group in
            reading: while true {
                let packet: WirePacket?
                switch await connection.frames.next() {
                case .frame(let frame):
                    do {
                        packet = try format.decode(frame)
                    } catch {
                        dispatcher.reportBadInput("malformed packet: \(error)", metadata: metadata)
                        channel.close(promise: nil)
                        break reading
                    }
                case .packet(let decoded):
                    packet = decoded
                case .malformed(let error):
                    dispatcher.reportBadInput(error.reason, metadata: metadata)
                    break reading
                case .end:
                    // The connection closed or failed, or the service was cancelled: nothing more to read.
                    break reading
                }
                guard let packet else { continue }
                guard case .request(let request) = packet else {
                    dispatcher.reportBadInput("a reply packet was sent to a server", metadata: metadata)
                    continue
                }
                let message = InboundMessage(
                    request: request,
                    metadata: metadata,
                    replyWriter: request.isEvent ? nil : writer
                )
                // On the event loop, a handler starts at once on this thread, which is where it would run anyway.
                await dispatcher.dispatch(message, in: &group, startImmediately: onEventLoop)
            }
        }
        // In a graceful shutdown, the replies of handlers that finished may still be queued (a reply larger than the
        // socket takes at once, or a peer reading slowly), and closing drops them: wait until they are written, but
        // not past the shutdown's deadline, so that a peer that does not read cannot hold the worker.
        if let deadline = dispatcher.shutdownDeadline, channel.isActive {
            await writer.written(before: deadline)
        }
        try? await channel.close()
    }

    private func publish(_ result: Result<any Channel, any Error>) {
        let waiters = listener.withLock { state -> [CheckedContinuation<any Channel, any Error>] in
            switch result {
            case .success(let channel):
                state.channel = channel
                state.failure = nil
            case .failure(let error): state.failure = error
            }
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume(with: result) }
    }

    private func listeningChannel() async throws -> any Channel {
        try await withCheckedThrowingContinuation { continuation in
            let ready = listener.withLock { state -> Result<any Channel, any Error>? in
                if let channel = state.channel { return .success(channel) }
                if let failure = state.failure { return .failure(failure) }
                state.waiters.append(continuation)
                return nil
            }
            if let ready { continuation.resume(with: ready) }
        }
    }
}

/// Writes framed replies to one connection. Many handlers write concurrently; writes are batched per event-loop
/// turn. A final reply returns once it is queued. A stream element does too, except every ``elementWindow``-th
/// element on the connection and any element written while the connection's outbound buffer is full: those return
/// once written, which paces a fast producer without a suspension per element.
final class TCPReplyWriter: ReplyWriter {
    /// How many stream elements a connection queues without waiting for one to be written.
    static let elementWindow = 64

    let writer: WriteCoalescer<ByteBuffer>
    let format: TCPWireFormat
    let maxFrameLength: Int
    /// How long an awaited element's write may wait before the connection is closed (``TCPConfiguration``).
    let stalledWriteTimeout: Duration?
    /// Stream elements queued on this connection since one was awaited.
    private let elementsSinceWait = Atomic<Int>(0)

    init(writer: WriteCoalescer<ByteBuffer>, format: TCPWireFormat, maxFrameLength: Int,
         stalledWriteTimeout: Duration? = nil) {
        self.writer = writer
        self.format = format
        self.maxFrameLength = maxFrameLength
        self.stalledWriteTimeout = stalledWriteTimeout
    }

    private var channel: any Channel { writer.channel }

    func writeFinalWithoutWaiting(_ reply: WireReply) -> Bool {
        guard reply.isDisposed else { return false }
        // A final reply is not awaited: nothing follows it, a failed write closes the connection (the caller's calls
        // then fail), and not waiting spares a suspension per request.
        writer.write(frame(reply), promise: nil)
        return true
    }

    func write(_ reply: WireReply) async throws {
        if writeFinalWithoutWaiting(reply) { return }
        // A stream element on a connection that is gone stops its handler at once.
        guard channel.isActive else { throw ChannelError.ioOnClosedChannel }
        let frame = frame(reply)
        let queued = elementsSinceWait.wrappingAdd(1, ordering: .relaxed).newValue
        if queued >= Self.elementWindow || !channel.isWritable {
            elementsSinceWait.store(0, ordering: .relaxed)
            // The wait ends when the handler is cancelled (its worker stops): a peer that never reads would
            // otherwise hold the handler, its connection and the worker's shutdown for ever.
            let written = channel.eventLoop.makePromise(of: Void.self)
            let waited = channel.eventLoop.makePromise(of: Void.self)
            written.futureResult.cascade(to: waited)
            if let timeout = stalledWriteTimeout {
                // A peer that reads nothing for this long is gone or hostile: closing fails this write (and the
                // connection's other calls), which ends the handler and frees its slot.
                let channel = self.channel
                let stalled = channel.eventLoop.scheduleTask(in: timeout.timeAmount) {
                    waited.fail(CourierError(.transportUnavailable,
                                             "the peer read no reply for \(timeout); closing its connection"))
                    channel.close(promise: nil)
                }
                written.futureResult.whenComplete { _ in stalled.cancel() }
            }
            writer.write(frame, promise: written)
            try await withTaskCancellationHandler {
                try await waited.futureResult.get()
            } onCancel: {
                waited.fail(CancellationError())  // a later completion of `waited` is ignored
            }
        } else {
            writer.write(frame, promise: nil)
        }
    }

    /// Waits until every reply queued on the connection so far is written, the connection fails, or `deadline`
    /// passes (this does not end when the task is cancelled: the deadline bounds it).
    func written(before deadline: NIODeadline) async {
        let eventLoop = channel.eventLoop
        let written = eventLoop.makePromise(of: Void.self)
        let waited = eventLoop.makePromise(of: Void.self)
        written.futureResult.cascade(to: waited)
        let expired = eventLoop.scheduleTask(deadline: deadline) {
            waited.fail(CourierError(.timedOut, "the replies were not written before the shutdown's deadline"))
        }
        written.futureResult.whenComplete { _ in expired.cancel() }
        // Writes go out in order: an empty one is written once everything queued before it is.
        writer.write(channel.allocator.buffer(capacity: 0), promise: written)
        try? await waited.futureResult.get()  // a later completion of `waited` is ignored
    }

    /// The reply's frame, or an error reply in its place when it exceeds the frame limit.
    private func frame(_ reply: WireReply) -> ByteBuffer {
        let frame = format.frame(reply, allocator: channel.allocator)
        if format.exceeds(frame, maxFrameLength: maxFrameLength) {
            // Tell the caller instead of sending a frame its decoder would reject.
            var replacement = reply
            replacement.response = nil
            replacement.error = WireReply.errorValue(
                for: CourierError(.payloadTooLarge, "the reply exceeds the frame limit of \(maxFrameLength) characters")
            )
            replacement.isDisposed = true
            return format.frame(replacement, allocator: channel.allocator)
        }
        return frame
    }
}
