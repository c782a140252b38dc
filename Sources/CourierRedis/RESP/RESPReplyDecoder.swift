//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// Turns the bytes read from a Redis socket into ``RESPValue``s, using hiredis's reader.
///
/// Every received buffer is handed to the reader whole (it keeps partial replies), then each complete reply is
/// fired down the pipeline. Invalid RESP throws ``CourierCore/CourierError`` with code `decodingFailed`, which
/// the connection handler turns into a closed connection with that message.
struct RESPReplyDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue

    private let reader: RESPReader

    init(allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        reader = RESPReader(allocator: allocator)
    }

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if buffer.readableBytes > 0 {
            try reader.feed(buffer)
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        }
        while let reply = try reader.nextReply() {
            context.fireChannelRead(wrapInboundOut(reply))
        }
        return .needMoreData
    }

    mutating func decodeLast(
        context: ChannelHandlerContext,
        buffer: inout ByteBuffer,
        seenEOF: Bool
    ) throws -> DecodingState {
        // A reply cut off by the connection closing is dropped: its command fails as "connection lost".
        try decode(context: context, buffer: &buffer)
    }
}
