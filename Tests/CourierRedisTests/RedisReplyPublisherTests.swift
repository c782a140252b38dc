//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import NIOCore
import Synchronization
import Testing

@testable import CourierRedis

/// A pub/sub worker's replies: stream elements are pipelined, and a stream with a lost element fails its next write
/// instead of going on with a gap.
@Suite struct RedisReplyPublisherTests {
    /// Final replies of tests that do not look at them.
    static let unreported = RedisUnansweredCommands { _ in }

    @Test func aStreamWhosePublishFailedThrowsOnItsNextElement() async throws {
        // A server of its own, with a user that may not PUBLISH: a real error answer to a pipelined element.
        try await withRedisServer { redis in
            let publisher = try await RedisConnection.connect(configuration: try await configurationWithoutPublish(on: redis))
            let writer = RedisReplyPublisher(
                connection: publisher,
                destination: .pubSub(format: .nestJS, requestChannel: "probe.stream", finalReplies: Self.unreported)
            )

            // Queued without waiting for Redis's answer.
            try await writer.write(WireReply(correlationID: "1", response: ByteBuffer(string: "1")))
            // Answers come in order: once PING is answered, the PUBLISH's error has been seen.
            _ = try await publisher.send(["PING"])
            await #expect(throws: RedisError.self) {
                try await writer.write(WireReply(correlationID: "1", response: ByteBuffer(string: "2")))
            }
            await #expect(throws: RedisError.self) {
                try await writer.write(WireReply(correlationID: "1", isDisposed: true))
            }

            // A Streams worker awaits its final reply, so the failure reaches it even with no element after.
            let caller = RedisReplyPublisher(connection: publisher, destination: .caller(channel: "probe.caller"))
            try await caller.write(WireReply(correlationID: "2", response: ByteBuffer(string: "1")))
            await #expect(throws: RedisError.self) {
                try await caller.write(WireReply(correlationID: "2", isDisposed: true))
            }
            await publisher.close()
        }
    }

    @Test func aWorkersFinalRepliesAreCountedAndTheirFailuresReported() async throws {
        try await withRedisServer { redis in
            let configuration = try await configurationWithoutPublish(on: redis)
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let failures = Mutex<[String]>([])
            let finalReplies = RedisUnansweredCommands { error in failures.withLock { $0.append("\(error)") } }
            for id in ["1", "2"] {
                let writer = RedisReplyPublisher(
                    connection: publisher,
                    destination: .pubSub(format: .nestJS, requestChannel: "probe.final", finalReplies: finalReplies)
                )
                // Returns once queued, without waiting for Redis's answer.
                try await writer.write(WireReply(correlationID: id, response: ByteBuffer(string: "1"), isDisposed: true))
            }
            // Answers come in order: once PING is answered, both PUBLISHes have been answered (with errors).
            _ = try await publisher.send(["PING"])
            #expect(finalReplies.unanswered == 0)
            #expect(failures.withLock { $0.count } == 2)
            #expect(failures.withLock { $0.first?.contains("NOPERM") } == true)
            await publisher.close()
        }
    }

    @Test func elementsPastTheWindowArriveInOrder() async throws {
        try await withRedis { configuration in
            let requestChannel = uniqueName("writer")
            let subscriber = try await RedisSubscriber.connect(configuration: configuration)
            // NestJS's reply channel: the request channel plus ".reply".
            try await subscriber.subscribe([requestChannel + ".reply"])
            let publisher = try await RedisConnection.connect(configuration: configuration)
            let writer = RedisReplyPublisher(
                connection: publisher,
                destination: .pubSub(format: .nestJS, requestChannel: requestChannel, finalReplies: Self.unreported)
            )

            let count = RedisReplyPublisher.elementWindow * 4
            for value in 0..<count {
                try await writer.write(WireReply(correlationID: "7", response: ByteBuffer(string: "\(value)")))
            }
            try await writer.write(WireReply(correlationID: "7", isDisposed: true))

            var values: [Int] = []
            var ended = false
            var messages = subscriber.messages.makeAsyncIterator()
            while !ended, let message = await messages.next() {
                guard case .reply(let reply) = try NestJSEnvelope.decode(message.payload) else { continue }
                if let response = reply.response, let value = Int(String(buffer: response)) { values.append(value) }
                ended = reply.isDisposed
            }
            #expect(values == Array(0..<count))
            await subscriber.close()
            await publisher.close()
        }
    }
}
