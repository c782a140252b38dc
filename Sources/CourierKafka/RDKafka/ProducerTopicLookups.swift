//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Logging
import Synchronization

/// Asks the cluster for the metadata of each topic a producer produces to for the first time, on the producer's
/// poll thread.
///
/// librdkafka can hold the first messages to a topic it has no metadata for until its once-a-second scan of unknown
/// topics (confluentinc/librdkafka#3202, still open in 2.x). On the mock cluster with librdkafka 2.0.2, the first
/// event to a topic reached its worker after 1.02 s and the next ones after 12–25 ms; every first message to a new
/// request, reply or dead-letter topic goes through the same producer path. Looking the topic up at once, as
/// librdkafka's maintainers advise, releases the held messages as soon as the broker answers.
final class ProducerTopicLookups: Sendable {
    private struct State {
        var seen: Set<String> = []
        /// The topic of the last message: most messages go where the one before went, and comparing spares hashing
        /// the name into `seen` for each of them.
        var last = ""
        var pending: [String] = []
        /// Until when new topics are left to librdkafka's scan, after a look-up failed.
        var pausedUntil: ContinuousClock.Instant?
        /// Metadata requests made, for tests.
        var requests = 0
    }

    private let state = Mutex(State())

    /// How long one look-up may block the poll thread (delivery reports wait meanwhile). librdkafka's own scan
    /// releases the messages within about a second anyway, so waiting longer gains nothing.
    static let timeoutMilliseconds: Int32 = 1_000

    /// Records that a message to `topic` was enqueued; returns `true` the first time, when the topic is now
    /// pending a look-up (wake the poll thread). Each topic is remembered for the producer's lifetime, as librdkafka
    /// keeps an object per topic too.
    func produced(to topic: String) -> Bool {
        state.withLock { state in
            if state.last == topic { return false }
            state.last = topic
            guard state.seen.insert(topic).inserted else { return false }
            state.pending.append(topic)
            return true
        }
    }

    /// The topics looked up or pending, for tests.
    var seenTopics: Set<String> { state.withLock { $0.seen } }
    /// Topics waiting for the poll thread, and metadata requests made so far, for tests.
    var counts: (pending: Int, requests: Int) { state.withLock { ($0.pending.count, $0.requests) } }

    /// Looks up the pending topics, one metadata request each; on the poll thread, which may block.
    ///
    /// After a failed look-up (the cluster unreachable or slow), the rest of the batch, and the topics that come
    /// within the next ``timeoutMilliseconds``, are left to librdkafka's own scan: new topics arriving one after
    /// another cannot hold the poll thread (and delivery reports) for a second each.
    func lookUpPending(_ handle: OpaquePointer, logger: Logger) {
        let topics = state.withLock { state -> [String] in
            defer { state.pending.removeAll() }
            if let pausedUntil = state.pausedUntil, ContinuousClock.now < pausedUntil { return [] }
            return state.pending
        }
        for (index, topic) in topics.enumerated() {
            state.withLock { $0.requests += 1 }
            let failure = RDKafkaTopicMetadata.request(
                handle, topic: topic, timeoutMilliseconds: Self.timeoutMilliseconds
            ) { outcome -> rd_kafka_resp_err_t? in
                if case .failed(let err) = outcome { return err }
                return nil
            }
            if let err = failure {
                state.withLock { $0.pausedUntil = .now + .milliseconds(Int(Self.timeoutMilliseconds)) }
                // Not fatal: librdkafka's own scan looks these topics up within about a second.
                logger.debug(
                    "could not look up the metadata of new topics; librdkafka's scan will",
                    metadata: [
                        "topics": "\(topics[index...])",
                        "rdkafka.error": "\(String(cString: rd_kafka_err2str(err)))",
                    ]
                )
                return
            }
        }
    }
}
