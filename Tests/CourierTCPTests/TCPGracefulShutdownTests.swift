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

/// A graceful shutdown of a TCP worker delivers the replies of the handlers it let finish.
@Suite struct TCPGracefulShutdownTests {
    typealias Fixtures = TCPTransportTests

    /// Collects every byte a connection receives, and whether it closed.
    final class Received: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        private let state = Mutex<(bytes: Int, text: [UInt8], closed: Bool)>((0, [], false))

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let buffer = unwrapInboundIn(data)
            state.withLock { state in
                state.bytes += buffer.readableBytes
                // Only the start is kept, for the length prefix.
                if state.text.count < 64 { state.text += buffer.readableBytesView.prefix(64 - state.text.count) }
            }
            context.fireChannelRead(data)
        }

        func channelInactive(context: ChannelHandlerContext) {
            state.withLock { $0.closed = true }
            context.fireChannelInactive()
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            context.close(promise: nil)
        }

        var bytes: Int { state.withLock { $0.bytes } }
        var isClosed: Bool { state.withLock { $0.closed } }
        var prefix: String { state.withLock { String(decoding: $0.text, as: UTF8.self) } }
    }

    /// A reply larger than the kernel's socket buffers hold, to a peer that has not read it yet when the handler
    /// returns during a graceful shutdown: the worker must write all of it before it closes the connection (within
    /// the graceful shutdown timeout), not drop what NIO still holds.
    @Test func aLargeReplyOfAHandlerFinishingDuringShutdownIsWrittenInFull() async throws {
        let large = MessagePattern<Int, String>("probe.large")
        let started = Fixtures.Signal()
        let release = Fixtures.Signal()
        let finished = Fixtures.Counter()
        let size = 8 * 1024 * 1024
        var router = Fixtures.router()
        router.on(large) { _, _ in
            started.fire()
            await release.wait()
            finished.increment()
            return String(repeating: "x", count: size)
        }
        let worker = try await Fixtures.startWorker(router: router, gracefulShutdownTimeout: .seconds(20))
        defer { worker.task.cancel() }
        let received = Received()
        // Reads nothing until told to, into a small receive buffer: the reply stays in the worker meanwhile.
        let peer = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelOption(.socketOption(.so_rcvbuf), value: 16 * 1024)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(host: "127.0.0.1", port: worker.port)
            .get()
        defer { peer.close(promise: nil) }
        try await peer.writeAndFlush(ByteBuffer(string: Fixtures.frame(#"{"pattern":"probe.large","data":0,"id":"1"}"#)))
        await started.wait()
        #expect(worker.service.inFlightHandlers == 1)

        let stopping = Task { await worker.stop() }
        #expect(try await Fixtures.eventually(within: .seconds(10)) { worker.service.isDraining })
        release.fire()
        #expect(try await Fixtures.eventually(within: .seconds(10)) { finished.count == 1 })
        // The handler returned and the worker is idle: without the fix it closes the connection now, dropping what
        // the socket could not take. Give it time to do so before reading.
        try await Task.sleep(for: .milliseconds(500))
        try await peer.setOption(.autoRead, value: true).get()
        peer.read()
        #expect(try await Fixtures.eventually(within: .seconds(20)) { received.isClosed })
        // One frame, `<length>#<json>`, all of it: the JSON holds the 8 MiB string.
        let prefix = received.prefix
        let length = try #require(prefix.firstIndex(of: "#").flatMap { Int(prefix[..<$0]) }, "prefix \(prefix)")
        #expect(length > size)
        #expect(received.bytes == "\(length)#".utf8.count + length, "received \(received.bytes) bytes of a \(length)-character frame")
        _ = await stopping.value
    }
}
