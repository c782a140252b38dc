//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A message published to a channel this subscriber listens to.
public struct RedisPubSubMessage: Sendable, Hashable {
    /// The channel the message was published to.
    public var channel: String
    /// The pattern that matched ``channel`` when the subscription is a pattern (`PSUBSCRIBE`); `nil` for a plain
    /// channel subscription.
    public var pattern: String?
    /// The published bytes.
    public var payload: ByteBuffer

    /// Creates a message (for tests and in-memory doubles).
    public init(channel: String, pattern: String? = nil, payload: ByteBuffer) {
        self.channel = channel
        self.pattern = pattern
        self.payload = payload
    }

    /// The message in a pushed `["message", channel, payload]` or `["pmessage", pattern, channel, payload]`
    /// array; `nil` for anything else (such as a subscription confirmation).
    init?(push value: RESPValue) {
        guard case .array(let elements?) = value, let first = elements.first,
            case .bulkString(let kind?) = first
        else { return nil }
        if elements.count == 3, Self.bytes(of: kind, equal: "message"),
            case .bulkString(let channel?) = elements[1], case .bulkString(let payload?) = elements[2]
        {
            self.init(channel: String(buffer: channel), payload: payload)
        } else if elements.count == 4, Self.bytes(of: kind, equal: "pmessage"),
            case .bulkString(let pattern?) = elements[1], case .bulkString(let channel?) = elements[2],
            case .bulkString(let payload?) = elements[3]
        {
            self.init(channel: String(buffer: channel), pattern: String(buffer: pattern), payload: payload)
        } else {
            return nil
        }
    }

    /// Compares bytes without the generic `elementsEqual`, which is not specialised for `ByteBufferView` (2 % of a
    /// worker's CPU per message).
    private static func bytes(of buffer: ByteBuffer, equal literal: StaticString) -> Bool {
        guard buffer.readableBytes == literal.utf8CodeUnitCount else { return false }
        return buffer.withUnsafeReadableBytes { bytes in
            bytes.elementsEqual(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount))
        }
    }
}
