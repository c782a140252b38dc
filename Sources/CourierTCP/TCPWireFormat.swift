//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// The bytes a TCP connection speaks.
///
/// - ``nestJS`` (the default): NestJS's `<length>#<json>` frames with `{pattern, data, id}` requests and
///   `{response, err, isDisposed, id}` replies, multiplexed by id. NestJS's `ClientTCP` and `ServerTCP` talk to it.
/// - ``ascender``: Ascender Framework 2.1.0's JSON lines, `{"pattern", "correlationId", "payload"}` with the payload
///   double-encoded and replies addressed to `_rpc:response` (see ``AscenderEnvelope`` for the details and for what
///   Courier does where Ascender is broken). Ascender's TCP clients and servers talk to it. A line is limited by
///   ``TCPConfiguration/maxFrameLength`` in bytes; Ascender's own readers stop at 64 KiB.
///
/// Both ends of a connection must use the same format.
public struct TCPWireFormat: Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Sendable, Hashable { case nestJS, ascender }
    private let kind: Kind

    /// NestJS's framing and envelopes.
    public static let nestJS = TCPWireFormat(kind: .nestJS)
    /// Ascender's JSON lines and envelopes.
    public static let ascender = TCPWireFormat(kind: .ascender)

    private init(kind: Kind) { self.kind = kind }

    /// Reads `nestjs` or `ascender` (case-insensitive), as in the `format=` option of a `tcp://` URL.
    public init?(name: String) {
        switch name.lowercased() {
        case "nestjs", "nest": self = .nestJS
        case "ascender": self = .ascender
        default: return nil
        }
    }

    public var description: String { kind == .nestJS ? "nestjs" : "ascender" }

    /// Adds the inbound frame decoder to a new connection's pipeline.
    func addDecoder(to pipeline: ChannelPipeline.SynchronousOperations, configuration: TCPConfiguration) throws {
        let timeout = configuration.incompleteFrameTimeout?.timeAmount
        switch kind {
        case .nestJS:
            try pipeline.addHandler(NestFrameDecoder(maxFrameLength: configuration.maxFrameLength,
                                                     incompleteFrameTimeout: timeout))
        case .ascender:
            try pipeline.addHandler(FrameDecoder(parser: LineFrameParser(maxLineLength: configuration.maxFrameLength),
                                                 incompleteFrameTimeout: timeout))
        }
    }

    /// The frame of a request or event.
    package func frame(_ request: WireRequest, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        switch kind {
        case .nestJS:
            return NestFraming.frame(request, allocator: allocator)
        case .ascender:
            // Ascender's payload is a JSON string of the JSON: room for escaping it.
            var buffer = allocator.buffer(capacity: NestJSEnvelope.capacity(for: request) + request.payload.readableBytes)
            AscenderEnvelope.encode(request, includesPattern: true, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "\n"))
            return buffer
        }
    }

    /// The frame of a reply.
    package func frame(_ reply: WireReply, allocator: ByteBufferAllocator = .init()) -> ByteBuffer {
        switch kind {
        case .nestJS:
            return NestFraming.frame(reply, allocator: allocator)
        case .ascender:
            var buffer = allocator.buffer(capacity: NestJSEnvelope.capacity(for: reply) + (reply.response?.readableBytes ?? 0))
            AscenderEnvelope.encode(reply, includesPattern: true, into: &buffer)
            buffer.writeInteger(UInt8(ascii: "\n"))
            return buffer
        }
    }

    /// Whether a frame built by this format is longer than the receiving side accepts.
    func exceeds(_ frame: ByteBuffer, maxFrameLength: Int) -> Bool {
        // The frame's bytes bound its UTF-16 length, so most frames need no count.
        guard frame.readableBytes > maxFrameLength else { return false }
        switch kind {
        case .nestJS: return NestFraming.bodyLength(of: frame) > maxFrameLength
        case .ascender: return frame.readableBytes - 1 > maxFrameLength
        }
    }

    /// Decodes a received frame; nil for a packet to ignore.
    package func decode(_ frame: ByteBuffer) throws(WireFormatError) -> WirePacket? {
        switch kind {
        case .nestJS: return try NestJSEnvelope.decode(frame)
        case .ascender: return try AscenderEnvelope.decode(frame)
        }
    }
}
