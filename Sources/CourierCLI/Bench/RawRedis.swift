//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierRedis
import NIOCore
import NIOPosix

/// The raw Redis baseline: PUBLISH/SUBSCRIBE ping-pong over the same connection code Courier's Redis transports use
/// (``RedisConnection`` for commands, pipelined without a task per command; ``RedisSubscriber`` for messages), but
/// no envelope, no correlation state machine, no router and no handler tasks.
///
/// A request is a PUBLISH of `<id>` to `raw.request`; the echo server PUBLISHes the same payload to `raw.reply`.
/// Events are PUBLISHes to `raw.event`, which the echo server counts; a request `count:<id>` is answered with
/// `<id>:<count>`.
enum RawRedis {
    static let request = "raw.request"
    static let reply = "raw.reply"
    static let event = "raw.event"
}

/// The raw Redis echo server `courier bench-raw-server` runs.
enum RawRedisEchoServer {
    /// Serves until the task is cancelled; calls `ready` once subscribed.
    static func serve(configuration: RedisConfiguration, ready: @escaping @Sendable () -> Void) async throws {
        let subscriber = try await RedisSubscriber.connect(configuration: configuration)
        let publisher = try await RedisConnection.connect(configuration: configuration)
        try await subscriber.subscribe([RawRedis.request, RawRedis.event])
        ready()
        var events = 0
        await withTaskCancellationHandler {
            for await message in subscriber.messages {
                if message.channel == RawRedis.event {
                    events += 1
                    continue
                }
                var payload = message.payload
                if payload.readableBytesView.starts(with: "count:".utf8) {
                    payload.moveReaderIndex(forwardBy: 6)
                    payload.writeString(":\(events)")
                }
                _ = publisher.enqueue(["PUBLISH", RESPArgument(RawRedis.reply), RESPArgument(payload)])
            }
        } onCancel: {
            Task { await subscriber.close() }
        }
        await publisher.close()
    }
}

/// The raw Redis client: one command connection and one subscriber, replies matched to calls by id.
final class RawRedisSubject: CallingBenchSubject {
    private let publisher: RedisConnection
    private let subscriber: RedisSubscriber
    private let waiting: PendingReplies
    private let reader: Task<Void, Never>

    private init(publisher: RedisConnection, subscriber: RedisSubscriber, waiting: PendingReplies,
                 reader: Task<Void, Never>) {
        self.publisher = publisher
        self.subscriber = subscriber
        self.waiting = waiting
        self.reader = reader
    }

    static func connect(configuration: RedisConfiguration) async throws -> RawRedisSubject {
        let publisher = try await RedisConnection.connect(configuration: configuration)
        let subscriber = try await RedisSubscriber.connect(configuration: configuration)
        try await subscriber.subscribe([RawRedis.reply])
        let waiting = PendingReplies()
        let reader = Task {
            for await message in subscriber.messages {
                // The payload starts with the id: `<id>` for an echo, `<id>:<count>` for a count.
                var id = 0
                for byte in message.payload.readableBytesView {
                    guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
                    id = id * 10 + Int(byte - UInt8(ascii: "0"))
                }
                waiting.complete(id, with: message.payload)
            }
        }
        return RawRedisSubject(publisher: publisher, subscriber: subscriber, waiting: waiting, reader: reader)
    }

    /// One round trip: register for the reply, queue the PUBLISH (no task per command), wait for the reply.
    private func call(prefix: String = "") async throws -> ByteBuffer {
        let (id, reply) = waiting.register(on: MultiThreadedEventLoopGroup.singleton.any())
        publisher.enqueue(["PUBLISH", RESPArgument(RawRedis.request), RESPArgument("\(prefix)\(id)")])
            .whenComplete { [waiting] result in
                guard case .success(let value) = result, let receivers = value.int, receivers > 0 else {
                    waiting.fail(id, CourierError(.transportUnavailable, "no raw echo server received \(id)"))
                    return
                }
            }
        return try await reply.get()
    }

    func roundTrip() async throws {
        _ = try await call()
    }

    func events(count: Int, counter: BenchCounter) async throws {
        let base = try await eventCount()
        var last: EventLoopFuture<RESPValue>?
        for index in 0..<count {
            last = publisher.enqueue(["PUBLISH", RESPArgument(RawRedis.event), "[1,2,3]"])
            // Bound what is queued on the connection, as a caller awaiting its writes would.
            if index % 4096 == 4095 { _ = try await last?.get() }
        }
        _ = try await last?.get()
        try await waitUntilCounted(base + count, from: base, counter: counter) { try await eventCount() }
    }

    private func eventCount() async throws -> Int {
        let reply = try await call(prefix: "count:")
        let text = String(buffer: reply)
        guard let colon = text.lastIndex(of: ":"), let count = Int(text[text.index(after: colon)...]) else {
            throw CourierError(.unprocessable, "raw Redis count reply is malformed: \(text)")
        }
        return count
    }

    func shutdown() async {
        await subscriber.close()
        await publisher.close()
        _ = await reader.value
    }
}
