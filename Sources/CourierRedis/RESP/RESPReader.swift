//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CHiredis
import CourierCore
import NIOCore

/// hiredis's RESP reader, building ``RESPValue``s directly.
///
/// The reader is given custom reply-object functions instead of its default ones, so it never builds a
/// `redisReply` tree: each scalar is copied once, from hiredis's input buffer into its Swift value, and arrays are
/// assembled on a small stack here. hiredis returns an opaque pointer per object; we return this reader's own
/// address (any non-NULL pointer means "created"), so `freeObject` has nothing to free.
///
/// Not thread-safe, like hiredis's reader: one instance per connection, used on its event loop.
///
/// Limits inherited from hiredis 0.14: arrays nest at most 7 deep (deeper replies are a protocol error), and only
/// RESP2 types are understood. On hiredis 1.x, RESP3 types would reach hiredis's placeholder objects, but Courier
/// never sends `HELLO 3`, so a server never sends them.
final class RESPReader {
    private struct OpenArray {
        var expected: Int
        var elements: [RESPValue]
    }

    private let reader: UnsafeMutablePointer<redisReader>
    /// hiredis keeps a pointer to the functions table rather than a copy, so it lives as long as the reader.
    private let functions: UnsafeMutablePointer<redisReplyObjectFunctions>
    private let allocator: ByteBufferAllocator
    private var openArrays: [OpenArray] = []
    private var completed: RESPValue?

    init(allocator: ByteBufferAllocator = ByteBufferAllocator()) {
        self.allocator = allocator
        functions = .allocate(capacity: 1)
        functions.initialize(to: redisReplyObjectFunctions())
        functions.pointee.createString = { task, bytes, count in
            RESPReader.owner(of: task).addString(type: task!.pointee.type, bytes: bytes, count: Int(count))
        }
        functions.pointee.createArray = { task, count in
            RESPReader.owner(of: task).openArray(count: Int(count))
        }
        functions.pointee.createInteger = { task, value in
            RESPReader.owner(of: task).add(.integer(Int(value)))
        }
        functions.pointee.createNil = { task in
            // The task's type tells `$-1` (a null bulk string) from `*-1` (a null array).
            let isArray = task!.pointee.type == REDIS_REPLY_ARRAY
            return RESPReader.owner(of: task).add(isArray ? .array(nil) : .bulkString(nil))
        }
        functions.pointee.freeObject = { _ in }
        guard let reader = redisReaderCreateWithFunctions(functions) else {
            fatalError("hiredis could not allocate a reply reader (out of memory)")
        }
        self.reader = reader
        reader.pointee.privdata = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        redisReaderFree(reader)
        functions.deinitialize(count: 1)
        functions.deallocate()
    }

    /// Appends received bytes to the reader's buffer (hiredis copies them).
    ///
    /// - Throws: ``CourierError`` with ``CourierError/Code/decodingFailed`` if the reader already failed.
    func feed(_ bytes: ByteBuffer) throws {
        let status = bytes.withUnsafeReadableBytes { raw in
            redisReaderFeed(reader, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard status == REDIS_OK else { throw protocolError() }
    }

    /// The next complete reply in the bytes fed so far, or `nil` when more bytes are needed.
    ///
    /// - Throws: ``CourierError`` with ``CourierError/Code/decodingFailed`` carrying hiredis's description when
    ///   the input is not valid RESP. The reader is unusable afterwards.
    func nextReply() throws -> RESPValue? {
        var reply: UnsafeMutableRawPointer?
        guard redisReaderGetReply(reader, &reply) == REDIS_OK else { throw protocolError() }
        guard reply != nil else { return nil }
        defer { completed = nil }
        guard let value = completed else {
            throw CourierError(.decodingFailed, "malformed reply from Redis: hiredis completed a reply of an unknown type")
        }
        return value
    }

    private func protocolError() -> CourierError {
        let message = withUnsafeBytes(of: reader.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return CourierError(.decodingFailed, "malformed reply from Redis: \(message)")
    }

    // MARK: Reply-object callbacks (called synchronously from inside redisReaderGetReply)

    private static func owner(of task: UnsafePointer<redisReadTask>?) -> RESPReader {
        Unmanaged<RESPReader>.fromOpaque(task!.pointee.privdata).takeUnretainedValue()
    }

    /// The pointer handed back to hiredis for every object: non-NULL, never dereferenced or freed by hiredis.
    private var objectToken: UnsafeMutableRawPointer { Unmanaged.passUnretained(self).toOpaque() }

    private func addString(type: Int32, bytes: UnsafeMutablePointer<CChar>?, count: Int) -> UnsafeMutableRawPointer? {
        let raw = UnsafeRawBufferPointer(start: bytes, count: count)
        switch type {
        case REDIS_REPLY_STATUS: return add(.simpleString(String(decoding: raw, as: UTF8.self)))
        case REDIS_REPLY_ERROR: return add(.error(String(decoding: raw, as: UTF8.self)))
        default: return add(.bulkString(allocator.buffer(bytes: raw)))
        }
    }

    private func openArray(count: Int) -> UnsafeMutableRawPointer? {
        guard count > 0 else { return add(.array([])) }
        var elements: [RESPValue] = []
        // The count comes from the wire; cap the reservation so a hostile `*2147483647` cannot allocate gigabytes.
        elements.reserveCapacity(min(count, 1024))
        openArrays.append(OpenArray(expected: count, elements: elements))
        return objectToken
    }

    /// Adds a finished value to the innermost open array, closing every array it completes; a value outside any
    /// array is a complete reply.
    private func add(_ value: RESPValue) -> UnsafeMutableRawPointer? {
        var value = value
        while let innermost = openArrays.indices.last {
            openArrays[innermost].elements.append(value)
            guard openArrays[innermost].elements.count == openArrays[innermost].expected else { return objectToken }
            value = .array(openArrays.removeLast().elements)
        }
        completed = value
        return objectToken
    }
}
