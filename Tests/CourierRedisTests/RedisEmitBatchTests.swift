//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierRedis
import Testing

/// `emitBatch` on Redis (pub/sub and Streams) when Redis refuses one event in the middle of the pipelined batch.
@Suite struct RedisEmitBatchTests {
    /// A server whose longest accepted argument is 1 MB (`proto-max-bulk-len`'s minimum): an event above it gets an
    /// error answer, and Redis then closes the connection, so the events pipelined behind it fail too.
    static func withSmallArgumentLimit(_ body: (RedisServer) async throws -> Void) async throws {
        try await withRedisServer(arguments: ["--proto-max-bulk-len", "1mb"], body)
    }

    /// The batch: a small event, one above the server's argument limit, a small event.
    static let batch: [JSONValue] = [["i": 1], .string(String(repeating: "x", count: 1_100_000)), ["i": 3]]

    /// Checks that `error` accounts for every event of the three: the second is reported as refused, with Redis's
    /// reason; the third either failed with the connection Redis closed after refusing the second, or was sent on the
    /// connection that replaced it (when it reached the connection after the close), and is counted as such; the
    /// first was accepted. Returns how many the error says were accepted.
    @discardableResult
    static func expectEveryEventAccountedFor(_ error: CourierError?, pattern: String) -> Int? {
        let described = String(describing: error)
        let failed = error?.details?.objectValue?["failed"]?.arrayValue?.compactMap(\.intValue) ?? []
        let accepted = error?.details?.objectValue?["accepted"]?.intValue
        #expect(failed == [1] || failed == [1, 2], "\(described)")
        #expect(accepted.map { Int($0) + failed.count } == 3, "\(described)")
        #expect(error?.details?.objectValue?["notSent"] == 0, "\(described)")
        #expect(error?.message.contains("\(failed.count) of 3 '\(pattern)' events failed") == true, "\(described)")
        #expect(error?.message.contains("event 2: ") == true, "\(described)")
        #expect(error?.message.contains("invalid bulk length") == true, "\(described)")
        #expect(error?.message.contains("event 3: ") == (failed == [1, 2]), "\(described)")
        return accepted.map { Int($0) }
    }

    /// Before, the batch threw the first failure alone ("could not publish …: ERR Protocol error") as soon as it
    /// came, not saying that it was the second event, what became of the third, nor that the first was accepted.
    @Test func aPubSubBatchReportsEveryEventRedisRefused() async throws {
        try await Self.withSmallArgumentLimit { redis in
            let pattern = uniqueName("batch.pubsub")
            let client = CourierClient(
                transport: RedisClientTransport(configuration: RedisPubSubConfiguration(connection: redis.configuration),
                                                logger: RedisTransportTests.quietLogger)
            )
            let error = await #expect(throws: CourierError.self) {
                try await client.emitBatch(pattern, json: Self.batch)
            }
            Self.expectEveryEventAccountedFor(error, pattern: pattern)
            // The connection is back for the next batch.
            try await client.emitBatch(pattern, json: [["i": 4], ["i": 5]])
            await client.shutdown()
        }
    }

    @Test func aStreamsBatchReportsEveryEventRedisRefused() async throws {
        try await Self.withSmallArgumentLimit { redis in
            let pattern = uniqueName("batch.streams")
            let client = CourierClient(
                transport: RedisStreamsClientTransport(
                    configuration: RedisStreamsConfiguration(connection: redis.configuration),
                    logger: RedisTransportTests.quietLogger
                )
            )
            let error = await #expect(throws: CourierError.self) {
                try await client.emitBatch(pattern, json: Self.batch)
            }
            let accepted = Self.expectEveryEventAccountedFor(error, pattern: pattern) ?? -1
            // Exactly the events the error calls accepted are in the stream; then the next batch is added behind.
            let connection = try await client.unwrap(as: RedisConnection.self)
            #expect(try await connection.send(["XLEN", .init(pattern)]).int == accepted)
            try await client.emitBatch(pattern, json: [["i": 4], ["i": 5]])
            #expect(try await connection.send(["XLEN", .init(pattern)]).int == accepted + 2)
            await client.shutdown()
        }
    }
}
