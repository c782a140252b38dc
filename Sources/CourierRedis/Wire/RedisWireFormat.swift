//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// The messages Redis pub/sub carries, and the channels they go on.
///
/// - ``nestJS`` (the default), as NestJS's Redis transporter: requests and events are published on the channel named
///   by the pattern, as `{"pattern":…,"data":…,"id":…}`; replies on `<pattern>.reply`, as
///   `{"response":…,"err":…,"isDisposed":…,"id":…}`. A message that is not such a packet (any JSON, or text) is an
///   event whose payload is that message, so any Redis publisher can trigger event handlers.
/// - ``ascender``, as Ascender Framework 2.1.0: requests `{"correlationId":…,"payload":"<json text>"}` on the
///   pattern's channel, replies on `_rpc:response` (errors on `_rpc:error`; see ``AscenderEnvelope``).
public struct RedisWireFormat: Sendable, Hashable, CustomStringConvertible {
    private enum Kind: Sendable, Hashable { case nestJS, ascender }
    private let kind: Kind

    /// NestJS's channels and envelopes.
    public static let nestJS = RedisWireFormat(kind: .nestJS)
    /// Ascender's channels and envelopes.
    public static let ascender = RedisWireFormat(kind: .ascender)

    private init(kind: Kind) { self.kind = kind }

    /// Reads `nestjs` or `ascender` (case-insensitive), as in the `format=` option of a `redis://` URL.
    public init?(name: String) {
        switch name.lowercased() {
        case "nestjs", "nest": self = .nestJS
        case "ascender": self = .ascender
        default: return nil
        }
    }

    public var description: String { kind == .nestJS ? "nestjs" : "ascender" }

    /// The suffix of NestJS reply channels.
    public static let replySuffix = ".reply"

    // MARK: Channels

    /// The channels a client listens on for the replies to requests on `pattern`.
    func replyChannels(forRequestsOn pattern: String) -> [String] {
        switch kind {
        case .nestJS: [pattern + Self.replySuffix]
        case .ascender: [AscenderEnvelope.responsePattern, AscenderEnvelope.errorPattern]
        }
    }

    /// The channel a worker publishes `reply` on, for a request that came on `channel`.
    func replyChannel(for reply: WireReply, requestChannel channel: String) -> String {
        switch kind {
        case .nestJS: channel + Self.replySuffix
        case .ascender: AscenderEnvelope.pattern(for: reply)
        }
    }

    // MARK: Packets

    /// The message for a request or event.
    func encode(_ request: WireRequest) -> ByteBuffer {
        // Ascender's payload is a JSON string of the JSON: room for escaping it.
        let escaping = kind == .ascender ? request.payload.readableBytes : 0
        var buffer = ByteBufferAllocator().buffer(capacity: NestJSEnvelope.capacity(for: request) + escaping)
        switch kind {
        case .nestJS: NestJSEnvelope.encode(request, into: &buffer)
        case .ascender: AscenderEnvelope.encode(request, includesPattern: false, into: &buffer)
        }
        return buffer
    }

    /// The message for a reply.
    func encode(_ reply: WireReply) -> ByteBuffer {
        let escaping = kind == .ascender ? reply.response?.readableBytes ?? 0 : 0
        var buffer = ByteBufferAllocator().buffer(capacity: NestJSEnvelope.capacity(for: reply) + escaping)
        switch kind {
        case .nestJS: NestJSEnvelope.encode(reply, into: &buffer)
        case .ascender: AscenderEnvelope.encode(reply, includesPattern: false, into: &buffer)
        }
        return buffer
    }

    /// What a worker makes of a message on a request channel: a request or event routed by `channel` (as NestJS
    /// routes by channel, not by the envelope's `pattern`), or nil for a message to ignore (a reply that strayed
    /// onto a request channel, such as an Ascender error).
    ///
    /// - Throws: ``WireFormatError`` for an Ascender message that is not an Ascender packet. NestJS never fails:
    ///   foreign messages become events.
    func decodeInbound(_ message: ByteBuffer, channel: String) throws(WireFormatError) -> WireRequest? {
        switch kind {
        case .nestJS:
            if let packet = try? NestJSEnvelope.decode(message) {
                guard case .request(var request) = packet else { return nil }
                request.pattern = channel
                return request
            }
            return WireRequest(pattern: channel, payload: Self.foreignPayload(message), correlationID: nil)
        case .ascender:
            guard case .request(let request)? = try AscenderEnvelope.decode(message, channel: channel) else {
                return nil
            }
            return request
        }
    }

    /// What a client makes of a message on a reply channel; nil for a message to ignore.
    func decodeReply(_ message: ByteBuffer) -> WireReply? {
        let packet: WirePacket?
        switch kind {
        case .nestJS: packet = try? NestJSEnvelope.decode(message)
        case .ascender: packet = try? AscenderEnvelope.decode(message, channel: "")
        }
        guard case .reply(let reply)? = packet else { return nil }
        return reply
    }

    /// A foreign message as an event payload: the JSON it is, or the text as a JSON string.
    static func foreignPayload(_ message: ByteBuffer) -> ByteBuffer {
        if (try? JSONValue(parsing: Array(message.readableBytesView))) != nil { return message }
        var buffer = ByteBuffer()
        NestJSEnvelope.writeJSONString(String(buffer: message), into: &buffer)
        return buffer
    }
}
