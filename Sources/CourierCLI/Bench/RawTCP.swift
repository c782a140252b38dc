//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierTCP
import NIOCore
import NIOPosix
import Synchronization

/// The raw TCP baseline: the same NestJS `<length>#<json>` framing code (``FrameDecoder``), the same write batching
/// (``WriteCoalescer``) and the same NIO event loops as Courier's TCP transport, but no envelope encoding or decoding,
/// no correlation state machine, no router and no handler tasks. The echo server writes each request frame back on
/// the event loop; the client matches replies by the id at the end of the frame.
///
/// Requests are `{"pattern":"raw.echo","data":[1,2,3],"id":"<n>"}`; events are
/// `{"pattern":"raw.event","data":[1,2,3]}` (counted, not answered); `{"pattern":"raw.count","id":"<n>"}` is answered
/// with the number of events counted so far.
enum RawTCP {
    static let eventPrefix = Array(#"{"pattern":"raw.event""#.utf8)
    static let countPrefix = Array(#"{"pattern":"raw.count""#.utf8)

    /// Sets up a connection's pipeline: Courier's NestJS frame decoder, then `handler`.
    static func framed<Handler: ChannelHandler>(
        _ channel: any Channel,
        then handler: @escaping @Sendable () -> Handler
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(
                NestFrameDecoder(maxFrameLength: 1 << 20, incompleteFrameTimeout: nil))
            try channel.pipeline.syncOperations.addHandler(handler())
        }
    }

    /// Frames an ASCII body (one UTF-16 unit per byte).
    static func frame(_ body: String, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: body.utf8.count + 8)
        buffer.writeString(String(body.utf8.count))
        buffer.writeInteger(UInt8(ascii: "#"))
        buffer.writeString(body)
        return buffer
    }

    /// The id in a frame body ending `"id":"<digits>"}`.
    static func trailingID(_ body: ByteBuffer) -> Int? {
        let bytes = body.readableBytesView
        guard bytes.count > 3, bytes.last == UInt8(ascii: "}") else { return nil }
        var index = bytes.index(bytes.endIndex, offsetBy: -2)
        guard bytes[index] == UInt8(ascii: "\"") else { return nil }
        var value = 0
        var scale = 1
        while index > bytes.startIndex {
            index = bytes.index(before: index)
            let byte = bytes[index]
            guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
            value += Int(byte - UInt8(ascii: "0")) * scale
            scale *= 10
        }
        return scale > 1 ? value : nil
    }
}

/// The raw TCP echo server `courier bench-raw-server` runs.
enum RawTCPEchoServer {
    /// Serves on `host:port` until the task is cancelled; calls `ready` with the bound port.
    static func serve(host: String, port: Int, ready: @escaping @Sendable (Int) -> Void) async throws {
        let events = EventCount()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { RawTCP.framed($0) { EchoHandler(events: events) } }
            .bind(host: host, port: port)
            .get()
        ready(channel.localAddress?.port ?? port)
        await withTaskCancellationHandler {
            try? await channel.closeFuture.get()
        } onCancel: {
            channel.close(promise: nil)
        }
    }

    final class EventCount: Sendable {
        let value = Atomic<Int>(0)
    }

    final class EchoHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let events: EventCount

        init(events: EventCount) { self.events = events }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let body = unwrapInboundIn(data)
            let view = body.readableBytesView
            if view.starts(with: RawTCP.eventPrefix) {
                events.value.add(1, ordering: .relaxed)
                return
            }
            if view.starts(with: RawTCP.countPrefix) {
                let id = RawTCP.trailingID(body) ?? 0
                let count = events.value.load(ordering: .relaxed)
                let reply = #"{"response":\#(count),"isDisposed":true,"id":"\#(id)"}"#
                context.write(wrapOutboundOut(RawTCP.frame(reply, allocator: context.channel.allocator)), promise: nil)
                return
            }
            // Echo: the same bytes, re-framed (the body is ASCII, so its length is its byte count).
            var frame = context.channel.allocator.buffer(capacity: body.readableBytes + 8)
            frame.writeString(String(body.readableBytes))
            frame.writeInteger(UInt8(ascii: "#"))
            var remaining = body
            frame.writeBuffer(&remaining)
            context.write(wrapOutboundOut(frame), promise: nil)
        }

        func channelReadComplete(context: ChannelHandlerContext) {
            context.flush()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }
    }
}

/// The raw TCP client: one connection, calls matched to replies by id.
final class RawTCPSubject: CallingBenchSubject {
    private let channel: any Channel
    private let writer: WriteCoalescer<ByteBuffer>
    private let waiting: PendingReplies

    private init(channel: any Channel, waiting: PendingReplies) {
        self.channel = channel
        self.waiting = waiting
        self.writer = WriteCoalescer(channel: channel)
    }

    static func connect(host: String, port: Int) async throws -> RawTCPSubject {
        let waiting = PendingReplies()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { RawTCP.framed($0) { ReplyHandler(waiting: waiting) } }
            .connect(host: host, port: port)
            .get()
        return RawTCPSubject(channel: channel, waiting: waiting)
    }

    /// Frames the request `body(id)`, queues it and waits for the reply carrying its id.
    private func request(_ body: (Int) -> String) async throws -> ByteBuffer {
        let (id, reply) = waiting.register(on: channel.eventLoop)
        writer.write(RawTCP.frame(body(id), allocator: channel.allocator), promise: nil)
        return try await reply.get()
    }

    func roundTrip() async throws {
        _ = try await request { #"{"pattern":"raw.echo","data":[1,2,3],"id":"\#($0)"}"# }
    }

    func events(count: Int, counter: BenchCounter) async throws {
        let base = try await eventCount()
        let event = #"{"pattern":"raw.event","data":[1,2,3]}"#
        for _ in 0..<count {
            writer.write(RawTCP.frame(event, allocator: channel.allocator), promise: nil)
        }
        try await waitUntilCounted(base + count, from: base, counter: counter) { try await eventCount() }
    }

    private func eventCount() async throws -> Int {
        let reply = try await request { #"{"pattern":"raw.count","id":"\#($0)"}"# }
        // {"response":<count>,"isDisposed":true,"id":"<n>"}
        let text = String(buffer: reply)
        guard let colon = text.firstIndex(of: ":"), let comma = text.firstIndex(of: ","),
            let count = Int(text[text.index(after: colon)..<comma])
        else { throw CourierError(.unprocessable, "raw TCP count reply is malformed: \(text)") }
        return count
    }

    func shutdown() async {
        try? await channel.close()
    }

    final class ReplyHandler: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let waiting: PendingReplies

        init(waiting: PendingReplies) { self.waiting = waiting }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let body = unwrapInboundIn(data)
            if let id = RawTCP.trailingID(body) { waiting.complete(id, with: body) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            waiting.failAll(CourierError(.transportUnavailable, "the raw TCP echo server closed the connection"))
        }
    }
}
