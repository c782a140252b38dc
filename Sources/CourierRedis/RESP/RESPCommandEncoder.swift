//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CHiredis
import CourierCore
import NIOCore

/// Encodes a command as a RESP array of bulk strings with hiredis's `redisFormatSdsCommandArgv` (binary-safe: every
/// argument is passed with its length).
///
/// Why hiredis and not a hand-written encoder: issue 4 assigns command encoding to hiredis, so one library owns
/// the wire format in both directions. The price is a `malloc` and two extra copies per command (arguments
/// gathered into one scratch area, hiredis's output copied into a `ByteBuffer`); the scratch area is stack memory
/// for small commands. The `sds` variant formats each length with hiredis's own formatter; `redisFormatCommandArgv`
/// calls `sprintf` per argument, which was 14 % of an emitting client's CPU. With the `sds` variant, the bench
/// process of a 300,000-event run used 2.73–2.82 s of CPU instead of 2.99–3.13 s (three runs each).
enum RESPCommandEncoder {
    /// The command's bytes, ready to write.
    ///
    /// - Throws: ``CourierError`` with ``CourierError/Code/encodingFailed`` if hiredis cannot allocate the command.
    static func encode(_ arguments: [RESPArgument], allocator: ByteBufferAllocator) throws -> ByteBuffer {
        precondition(!arguments.isEmpty, "a Redis command has at least its name")
        var totalBytes = 0
        for argument in arguments { totalBytes += argument.byteCount }
        // One contiguous scratch area keeps every argument pointer valid for the single hiredis call.
        return try withUnsafeTemporaryAllocation(byteCount: max(totalBytes, 1), alignment: 1) { scratch in
            try withUnsafeTemporaryAllocation(of: UnsafePointer<CChar>?.self, capacity: arguments.count) { argv in
                try withUnsafeTemporaryAllocation(of: Int.self, capacity: arguments.count) { lengths in
                    var offset = 0
                    for (index, argument) in arguments.enumerated() {
                        let count = argument.byteCount
                        let start = scratch.baseAddress! + offset
                        argument.copyBytes(to: UnsafeMutableRawBufferPointer(start: start, count: count))
                        argv.initializeElement(at: index, to: UnsafePointer(start.assumingMemoryBound(to: CChar.self)))
                        lengths.initializeElement(at: index, to: count)
                        offset += count
                    }
                    var command: sds?
                    let length = redisFormatSdsCommandArgv(
                        &command, Int32(arguments.count), argv.baseAddress, lengths.baseAddress
                    )
                    defer { if let command { redisFreeSdsCommand(command) } }
                    guard length > 0, let command else {
                        throw CourierError(.encodingFailed, "hiredis could not encode the Redis command (out of memory)")
                    }
                    var buffer = allocator.buffer(capacity: Int(length))
                    buffer.writeBytes(UnsafeRawBufferPointer(start: command, count: Int(length)))
                    return buffer
                }
            }
        }
    }
}
