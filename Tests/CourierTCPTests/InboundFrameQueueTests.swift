//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import NIOEmbedded
import Testing

@testable import CourierTCP

/// The queue between a server connection's pipeline and its reader task: order, ending, read backpressure, and no
/// reference cycle once the connection is gone.
@Suite struct InboundFrameQueueTests {
    /// Counts the reads that reach the head of the pipeline (the ones the queue did not withhold).
    final class ReadCounter: ChannelOutboundHandler {
        typealias OutboundIn = ByteBuffer
        var reads = 0
        func read(context: ChannelHandlerContext) {
            reads += 1
            context.read()
        }
    }

    static func frame(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }

    static func text(_ next: InboundFrameQueue.Next) -> String? {
        if case .frame(let buffer) = next { return String(buffer: buffer) }
        return nil
    }

    @Test func framesArriveInOrderThenTheEnd() async throws {
        let channel = EmbeddedChannel()
        let queue = try InboundFrameQueue.install(on: channel)
        try channel.writeInbound(Self.frame("a"))
        try channel.writeInbound(Self.frame("b"))
        #expect(Self.text(await queue.next()) == "a")
        #expect(Self.text(await queue.next()) == "b")
        _ = try await channel.close()
        guard case .end = await queue.next() else {
            Issue.record("expected the end after the connection closed")
            return
        }
    }

    @Test func aMalformedStreamEndsTheQueueAfterTheFramesBeforeIt() async throws {
        let channel = EmbeddedChannel()
        let queue = try InboundFrameQueue.install(on: channel)
        try channel.writeInbound(Self.frame("a"))
        channel.pipeline.fireErrorCaught(FrameError(reason: "bad length"))
        #expect(Self.text(await queue.next()) == "a")
        guard case .malformed(let error) = await queue.next() else {
            Issue.record("expected the frame error")
            return
        }
        #expect(error.reason == "bad length")
    }

    @Test func readsAreWithheldWhileFullAndResumeAtTheLowWatermark() async throws {
        let channel = EmbeddedChannel()
        let counter = ReadCounter()
        try channel.pipeline.syncOperations.addHandler(counter)
        let queue = try InboundFrameQueue.install(on: channel)

        channel.read()
        #expect(counter.reads == 1, "a read with room in the queue goes through")
        for index in 0..<InboundFrameQueue.highWatermark {
            try channel.writeInbound(Self.frame("\(index)"))
        }
        channel.read()
        #expect(counter.reads == 1, "a read with the queue full is withheld")

        let toDrain = InboundFrameQueue.highWatermark - InboundFrameQueue.lowWatermark - 1
        for index in 0..<toDrain {
            #expect(Self.text(await queue.next()) == "\(index)")
        }
        #expect(counter.reads == 1, "still above the low watermark")
        #expect(Self.text(await queue.next()) == "\(toDrain)")
        #expect(counter.reads == 2, "the withheld read is made once the reader is down to the low watermark")
        _ = try await channel.close()
    }

    /// While the queue withholds reads, the rest of a half-read frame waits in the kernel through no fault of the
    /// peer: the incomplete-frame timeout must not close the connection (and fail every call on it) meanwhile.
    @Test func aFrameLeftIncompleteWhileReadsAreWithheldIsNotTimedOut() async throws {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(
            NestFrameDecoder(maxFrameLength: 1 << 20, incompleteFrameTimeout: .milliseconds(200)))
        let queue = try InboundFrameQueue.install(on: channel)
        try await channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).get()
        channel.read()
        var bytes = ""
        for index in 0..<InboundFrameQueue.highWatermark { bytes += "\(String(index).count)#\(index)" }
        try channel.writeInbound(ByteBuffer(string: bytes + "10#{\"half"))
        channel.read()  // withheld: the queue is full
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(channel.isActive, "timed out while the worker, not the peer, held the rest of the frame back")

        let toResume = InboundFrameQueue.highWatermark - InboundFrameQueue.lowWatermark
        for index in 0..<toResume { #expect(Self.text(await queue.next()) == "\(index)") }
        // Reading again: the frame gets a full timeout, and a peer that still sends nothing is then cut off.
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(199))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
        #expect(!channel.isActive)
    }

    @Test func aClosedConnectionReleasesItsQueue() async throws {
        weak var released: InboundFrameQueue?
        do {
            let channel = EmbeddedChannel()
            let queue = try InboundFrameQueue.install(on: channel)
            released = queue
            try channel.writeInbound(Self.frame("a"))
            _ = try await channel.close()
            channel.embeddedEventLoop.run()
            #expect(Self.text(await queue.next()) == "a")
        }
        #expect(released == nil, "the queue and its handler keep each other alive")
    }
}
