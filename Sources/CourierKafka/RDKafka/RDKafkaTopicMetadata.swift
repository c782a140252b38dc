//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka

/// One metadata request for one topic, as the admin client, the reply listener and the producer's first-message
/// look-ups make it.
///
/// `rd_kafka_metadata` blocks for up to its timeout: call this only on a thread that may block (a poll thread or a
/// thread of its own), never on Swift concurrency's pool.
enum RDKafkaTopicMetadata {
    /// What the request gave. The entry is valid only inside the `body` it is passed to.
    enum Outcome {
        /// librdkafka could not open a handle for the topic (`rd_kafka_last_error()` says why).
        case noTopicHandle
        /// The request failed, for example because no broker answered in time.
        case failed(rd_kafka_resp_err_t)
        /// The cluster answered: the topic's entry, or `nil` if the answer did not mention the topic.
        case answered(UnsafePointer<rd_kafka_metadata_topic>?)
    }

    /// Requests `topic`'s metadata, waiting at most `timeoutMilliseconds`, and returns what `body` makes of it.
    static func request<Result>(
        _ handle: OpaquePointer,
        topic: String,
        timeoutMilliseconds: Int32,
        _ body: (Outcome) throws -> Result
    ) rethrows -> Result {
        guard let topicHandle = rd_kafka_topic_new(handle, topic, nil) else { return try body(.noTopicHandle) }
        defer { rd_kafka_topic_destroy(topicHandle) }
        var metadata: UnsafePointer<rd_kafka_metadata>?
        let err = rd_kafka_metadata(handle, 0, topicHandle, &metadata, timeoutMilliseconds)
        defer { if let metadata { rd_kafka_metadata_destroy(metadata) } }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let metadata else { return try body(.failed(err)) }
        let topics = UnsafeBufferPointer(start: metadata.pointee.topics, count: Int(metadata.pointee.topic_cnt))
        let index = topics.firstIndex { String(cString: $0.topic) == topic }
        return try body(.answered(index.map { UnsafePointer(metadata.pointee.topics + $0) }))
    }
}
