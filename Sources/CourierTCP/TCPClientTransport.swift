//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The caller side of the TCP transport, on NestJS's wire format (or Ascender's: ``TCPConfiguration/format``).
///
/// One connection carries every call, multiplexed by correlation id, as NestJS's `ClientTCP` does. It connects
/// on the first call; when the connection drops, the calls pending on it fail at once with
/// ``CourierError/Code/transportUnavailable`` and the next call connects again. An `emit` returns once its event is
/// written to the socket, or, with ``TCPConfiguration/awaitsEventAcknowledgement`` off, once it is queued (up to
/// ``TCPConfiguration/maxUnwrittenEvents``). `nativeClient` returns the NIO `Channel`.
public final class TCPClientTransport: ClientTransport {
    public var name: String { "tcp" }

    private let configuration: TCPConfiguration
    private let eventLoopGroup: any EventLoopGroup
    private let logger: Logger
    private let state = Mutex<ConnectionState>(.idle)
    /// Events queued without waiting (``TCPConfiguration/awaitsEventAcknowledgement`` off) that the write batch has
    /// not handed to the connection yet.
    private let unwrittenEvents = UnwrittenEvents()

    private enum ConnectionState {
        case idle
        case connecting(EventLoopFuture<any Channel>)
        case connected(any Channel, WriteCoalescer<TCPClientHandler.Outbound>)
        case closed
    }

    /// Creates a TCP client transport.
    ///
    /// - Parameters:
    ///   - configuration: Where to connect and the frame limits.
    ///   - eventLoopGroup: The NIO event loops to use. Default: the process-wide singleton group.
    ///   - logger: Where events that could not be written are reported (with acknowledgements off).
    public init(
        configuration: TCPConfiguration = .init(),
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "courier.tcp.client")
    ) {
        self.configuration = configuration
        self.eventLoopGroup = eventLoopGroup
        self.logger = logger
    }

    /// Creates a TCP client transport for `host:port`.
    public convenience init(host: String, port: Int) {
        self.init(configuration: TCPConfiguration(host: host, port: port))
    }

    public func connect(replies: any ReplyReceiver) async throws {
        _ = try await channel(replies: replies)
    }

    public var isConnected: Bool {
        state.withLock { state in
            if case .connected(let channel, _) = state { return channel.isActive }
            return false
        }
    }

    public func nativeClient(replies: any ReplyReceiver) async throws -> any Sendable {
        try await channel(replies: replies)
    }

    public func send(_ request: WireRequest) {
        let frame = configuration.format.frame(request)
        guard let id = request.correlationID else { return }
        if configuration.format.exceeds(frame, maxFrameLength: configuration.maxFrameLength) {
            fail(id, tooLarge(request))
            return
        }
        guard case .connected(_, let writer) = state.withLock({ $0 }) else {
            fail(id, CourierError.unavailable("not connected to \(endpoint)"))
            return
        }
        writer.write(.request(id: id, frame: frame), promise: nil)
    }

    public func emit(_ event: WireRequest) async throws {
        let frame = configuration.format.frame(event)
        if configuration.format.exceeds(frame, maxFrameLength: configuration.maxFrameLength) { throw tooLarge(event) }
        guard case .connected(let channel, let writer) = state.withLock({ $0 }) else {
            throw CourierError.unavailable("not connected to \(endpoint)")
        }
        if mayQueueWithoutWaiting(1, on: channel) {
            writer.write(.event(frame, counted: true), promise: nil)
            return
        }
        do {
            try await writer.writeAndWait(.event(frame, counted: false))
        } catch {
            throw CourierError.unavailable("could not write to \(endpoint): \(error)", underlying: error)
        }
    }

    /// Frames every event first (a batch with one too large for a frame sends nothing, and its error names every such
    /// event), then queues them all in one write batch and waits for the last to be written (with acknowledgements
    /// off, only where the batch does not fit within ``TCPConfiguration/maxUnwrittenEvents``, as for ``emit(_:)``).
    public func emit(batch events: [WireRequest]) async throws {
        var frames: [ByteBuffer] = []
        frames.reserveCapacity(events.count)
        var tooLargeEvents: [(index: Int, error: any Error)] = []
        for (index, event) in events.enumerated() {
            let frame = configuration.format.frame(event)
            if configuration.format.exceeds(frame, maxFrameLength: configuration.maxFrameLength) {
                tooLargeEvents.append((index, tooLarge(event)))
            }
            frames.append(frame)
        }
        if !tooLargeEvents.isEmpty {
            throw CourierError.batch(events[0].pattern, count: events.count, failures: tooLargeEvents, firstUnsent: 0)
        }
        guard case .connected(let channel, let writer) = state.withLock({ $0 }) else {
            throw CourierError.unavailable("not connected to \(endpoint)")
        }
        if mayQueueWithoutWaiting(frames.count, on: channel) {
            writer.writeAll(frames.map { .event($0, counted: true) })
            return
        }
        do {
            try await writer.writeAllAndWait(frames.map { .event($0, counted: false) })
        } catch {
            throw CourierError.unavailable("could not write to \(endpoint): \(error)", underlying: error)
        }
    }

    public func release(correlationID: String) {
        guard case .connected(let channel, _) = state.withLock({ $0 }) else { return }
        channel.pipeline.fireUserInboundEventTriggered(TCPClientHandler.Release(id: correlationID))
    }

    public func close() async {
        let channel = state.withLock { state -> (any Channel)? in
            defer { state = .closed }
            if case .connected(let channel, _) = state { return channel }
            return nil
        }
        try? await channel?.close()
    }

    // MARK: Connection management

    private var endpoint: String { "tcp://\(configuration.host):\(configuration.port)" }

    /// With acknowledgements off, counts `count` events as queued and returns true, unless the connection's outbound
    /// buffer is full or the queued events would pass ``TCPConfiguration/maxUnwrittenEvents``: then the caller must
    /// wait for its writes, which is what bounds a fast emitter.
    private func mayQueueWithoutWaiting(_ count: Int, on channel: any Channel) -> Bool {
        guard !configuration.awaitsEventAcknowledgement, channel.isWritable else { return false }
        let queued = unwrittenEvents.count.add(count, ordering: .relaxed).newValue
        if queued <= max(1, configuration.maxUnwrittenEvents) { return true }
        unwrittenEvents.count.subtract(count, ordering: .relaxed)
        return false
    }

    private func tooLarge(_ request: WireRequest) -> CourierError {
        CourierError(
            .payloadTooLarge,
            "the message for '\(request.pattern)' exceeds the frame limit of \(configuration.maxFrameLength) characters"
        )
    }

    private func fail(_ id: String, _ error: CourierError) {
        receiver.withLock { $0 }?.fail(correlationIDs: CollectionOfOne(id), with: error)
    }

    /// Where replies go; set by the first `connect`.
    private let receiver = Mutex<(any ReplyReceiver)?>(nil)

    private func channel(replies: any ReplyReceiver) async throws -> any Channel {
        enum Step {
            case ready(any Channel)
            case wait(EventLoopFuture<any Channel>)
            case start(EventLoopPromise<any Channel>)
        }
        let step = state.withLock { state -> Result<Step, CourierError> in
            switch state {
            case .connected(let channel, _) where channel.isActive:
                return .success(.ready(channel))
            case .connecting(let future):
                return .success(.wait(future))
            case .closed:
                return .failure(.unavailable("the TCP client is closed"))
            case .idle, .connected:
                let promise = eventLoopGroup.any().makePromise(of: (any Channel).self)
                state = .connecting(promise.futureResult)
                return .success(.start(promise))
            }
        }
        switch try step.get() {
        case .ready(let channel):
            return channel
        case .wait(let future):
            return try await future.get()
        case .start(let promise):
            receiver.withLock { $0 = replies }
            let future = startConnection(replies: replies)
            future.cascade(to: promise)
            do {
                return try await future.get()
            } catch {
                state.withLock { state in
                    if case .connecting = state { state = .idle }
                }
                throw CourierError.unavailable("cannot connect to \(endpoint): \(error)", underlying: error)
            }
        }
    }

    private func startConnection(replies: any ReplyReceiver) -> EventLoopFuture<any Channel> {
        let configuration = self.configuration
        let endpoint = self.endpoint
        let unwrittenEvents = self.unwrittenEvents
        let logger = self.logger
        return ClientBootstrap(group: eventLoopGroup)
            .connectTimeout(configuration.connectTimeout.timeAmount)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try configuration.format.addDecoder(to: channel.pipeline.syncOperations,
                                                        configuration: configuration)
                    try channel.pipeline.syncOperations.addHandler(
                        TCPClientHandler(replies: replies, endpoint: endpoint, format: configuration.format)
                    )
                }
            }
            .connect(host: configuration.host, port: configuration.port)
            .flatMapThrowing { [weak self] channel in
                // On the channel's event loop: the handler is there to be looked up.
                let handler = NIOLoopBound(
                    try channel.pipeline.syncOperations.handler(type: TCPClientHandler.self),
                    eventLoop: channel.eventLoop
                )
                // Publish the connection before anyone waiting on the connect future resumes and sends.
                let published = self?.state.withLock { state -> Bool in
                    guard case .connecting = state else { return false }
                    let writer = WriteCoalescer<TCPClientHandler.Outbound>(
                        channel: channel,
                        onUnwritten: { items in
                            var ids: [String] = []
                            var lostEvents = 0
                            for item in items {
                                switch item {
                                case .request(let id, _): ids.append(id)
                                case .event(_, counted: true): lostEvents += 1
                                case .event(_, counted: false): break  // its caller waits, and is told
                                }
                            }
                            if !ids.isEmpty {
                                replies.fail(
                                    correlationIDs: ids,
                                    with: .unavailable("connection to \(endpoint) closed before the request was sent")
                                )
                            }
                            if lostEvents > 0 {
                                unwrittenEvents.count.subtract(lostEvents, ordering: .relaxed)
                                logger.warning("events were lost: the connection closed before they were written",
                                               metadata: ["endpoint": "\(endpoint)", "events": "\(lostEvents)"])
                            }
                        },
                        writeOnLoop: { item, promise in
                            if case .event(_, counted: true) = item {
                                unwrittenEvents.count.subtract(1, ordering: .relaxed)
                            }
                            handler.value.write(item, promise: promise)
                        }
                    )
                    state = .connected(channel, writer)
                    return true
                } ?? false
                guard published else {
                    // The transport was closed (or released) while connecting: nobody would ever close this one.
                    channel.close(promise: nil)
                    throw CourierError.unavailable("the TCP client was closed while connecting to \(endpoint)")
                }
                channel.closeFuture.whenComplete { [weak self] _ in
                    self?.state.withLock { state in
                        if case .connected(let current, _) = state, current === channel { state = .idle }
                    }
                }
                return channel
            }
    }
}

/// Tracks the calls pending on one connection, writes their requests and hands their replies to the correlator.
///
/// Requests reach it from the transport's ``WriteCoalescer`` on the event loop (``write(_:promise:)``), not through
/// the pipeline, so that a request (an id and a frame) is not boxed per write; anything else written to the
/// channel (through `nativeClient`) passes by untouched.
final class TCPClientHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Outbound {
        case request(id: String, frame: ByteBuffer)
        /// `counted`: queued without waiting, and counted in the transport's unwritten events until written.
        case event(ByteBuffer, counted: Bool)
    }

    struct Release { let id: String }

    private let replies: any ReplyReceiver
    private let endpoint: String
    private let format: TCPWireFormat
    private var pending = Set<String>()
    private var closeReason: String?

    init(replies: any ReplyReceiver, endpoint: String, format: TCPWireFormat) {
        self.replies = replies
        self.endpoint = endpoint
        self.format = format
    }

    /// The handler's place in the pipeline, while it is in one.
    private var context: ChannelHandlerContext?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    /// Writes a request or event; on the event loop.
    func write(_ item: Outbound, promise: EventLoopPromise<Void>?) {
        guard let context else {
            // Only after the connection closed (or the handler was taken out of the pipeline).
            promise?.fail(ChannelError.ioOnClosedChannel)
            if case .request(let id, _) = item {
                replies.fail(correlationIDs: CollectionOfOne(id),
                             with: .unavailable("connection to \(endpoint) closed"))
            }
            return
        }
        switch item {
        case .request(let id, let frame):
            // No promise per request: a failed write closes the connection, and `channelInactive` fails every
            // pending call, this one included (the coalescer only writes to an active channel).
            pending.insert(id)
            context.write(wrapOutboundOut(frame), promise: promise)
        case .event(let frame, _):
            context.write(wrapOutboundOut(frame), promise: promise)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        do {
            guard case .reply(let reply) = try format.decode(frame) else {
                return  // a request sent to a client, or a packet to ignore
            }
            if reply.isTerminal { pending.remove(reply.correlationID) }
            replies.receive(reply)
        } catch {
            closeReason = "malformed reply from \(endpoint): \(error)"
            context.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case let release as Release:
            pending.remove(release.id)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        closeReason = "connection to \(endpoint) failed: \(error)"
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        let ids = pending
        pending.removeAll()
        if !ids.isEmpty {
            replies.fail(
                correlationIDs: ids,
                with: .unavailable(closeReason ?? "connection to \(endpoint) closed")
            )
        }
        context.fireChannelInactive()
    }
}

/// The count behind ``TCPConfiguration/maxUnwrittenEvents``, shared with a connection's write batch.
final class UnwrittenEvents: Sendable {
    let count = Atomic<Int>(0)
}
