//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore

/// One Redis Streams entry as Courier writes it, and the replies Redis gives when reading entries.
///
/// A request or event is one entry with the field `packet`, its NestJS envelope (`{"pattern","data","id",
/// "metadata"}`, the caller's timeout and headers in `metadata`), and, for a request, `reply-to`: the pub/sub
/// channel the caller listens on.
struct RedisStreamEntry: Sendable {
    /// The field holding the NestJS envelope.
    static let packetField = "packet"
    /// The field holding the caller's reply channel (requests only).
    static let replyToField = "reply-to"

    var stream: String
    var id: String
    var fields: [(name: String, value: ByteBuffer)]

    func field(_ name: String) -> ByteBuffer? {
        fields.last { $0.name == name }?.value
    }

    /// When the entry was added, from its id (`<milliseconds>-<sequence>`).
    var addedAtMilliseconds: Int64? {
        id.split(separator: "-").first.flatMap { Int64($0) }
    }

    /// The `XADD` arguments after the stream name for a request or event.
    static func addArguments(_ request: WireRequest, replyTo: String?, maxLength: Int?) -> [RESPArgument] {
        var arguments: [RESPArgument] = []
        if let maxLength { arguments += ["MAXLEN", "~", RESPArgument(maxLength)] }
        var packet = ByteBufferAllocator().buffer(capacity: NestJSEnvelope.capacity(for: request))
        NestJSEnvelope.encode(request, into: &packet)
        arguments += ["*", RESPArgument(packetField), RESPArgument(packet)]
        if let replyTo { arguments += [RESPArgument(replyToField), RESPArgument(replyTo)] }
        return arguments
    }

    /// The entries in an `XREADGROUP` reply: `[[stream, [[id, [field, value, …]], …]], …]`, or null on timeout.
    static func entries(fromRead reply: RESPValue) throws -> [RedisStreamEntry] {
        guard !reply.isNull else { return [] }
        guard let streams = reply.array else { throw malformed("XREADGROUP", reply) }
        var entries: [RedisStreamEntry] = []
        for element in streams {
            guard let pair = element.array, pair.count == 2, let stream = pair[0].string else {
                throw malformed("XREADGROUP", reply)
            }
            entries += try Self.entries(in: stream, list: pair[1])
        }
        return entries
    }

    /// The entries of `stream` in a list `[[id, [field, value, …]], …]` (`XRANGE`, `XCLAIM`); entries deleted since
    /// (`[id, nil]`) are left out.
    static func entries(in stream: String, list: RESPValue) throws -> [RedisStreamEntry] {
        guard let items = list.array else { throw malformed("entry list", list) }
        var entries: [RedisStreamEntry] = []
        for item in items {
            guard let parts = item.array, parts.count == 2, let id = parts[0].string else { continue }
            guard let flat = parts[1].array else { continue }  // deleted
            var fields: [(String, ByteBuffer)] = []
            var index = 0
            while index + 1 < flat.count {
                if let name = flat[index].string, case .bulkString(let value?) = flat[index + 1] {
                    fields.append((name, value))
                }
                index += 2
            }
            entries.append(RedisStreamEntry(stream: stream, id: id, fields: fields))
        }
        return entries
    }

    private static func malformed(_ what: String, _ reply: RESPValue) -> CourierError {
        CourierError(.transportUnavailable, "unexpected \(what) reply from Redis: \(String(describing: reply).prefix(200))")
    }
}
