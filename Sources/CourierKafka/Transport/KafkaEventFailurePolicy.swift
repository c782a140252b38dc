//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// What a Kafka worker does with an event whose handler throws.
///
/// The handler is retried in place, after a backoff that doubles each time, so the partition's order is kept and a
/// poison record blocks its partition for a bounded time only. When the retries are spent the record goes to a
/// dead-letter topic (``deadLetter(retries:initialBackoff:suffix:)``, the default) or is skipped and counted
/// (``skip(retries:initialBackoff:)``); either way its offset is then stored. Requests are not retried: their
/// caller receives the error.
public struct KafkaEventFailurePolicy: Sendable, Hashable {
    /// How many times a failed event handler runs again.
    public var retries: Int
    /// The wait before the first retry; each later retry waits twice as long as the one before.
    public var initialBackoff: Duration
    /// The suffix of the dead-letter topic (`<topic><suffix>`), or `nil` to skip failed records.
    public var deadLetterSuffix: String?

    /// Retries, then publishes the record to `<topic><suffix>` with headers naming the original topic, partition,
    /// offset, the error and the attempts (`courier-dlq-*`).
    ///
    /// Default: 3 retries from 100 ms, topic `<topic>.dlq`.
    public static func deadLetter(
        retries: Int = 3,
        initialBackoff: Duration = .milliseconds(100),
        suffix: String = ".dlq"
    ) -> KafkaEventFailurePolicy {
        KafkaEventFailurePolicy(retries: max(0, retries), initialBackoff: initialBackoff, deadLetterSuffix: suffix)
    }

    /// Retries, then skips the record; the microservice counts it in `failedEvents` and logs the error.
    public static func skip(retries: Int = 3, initialBackoff: Duration = .milliseconds(100)) -> KafkaEventFailurePolicy {
        KafkaEventFailurePolicy(retries: max(0, retries), initialBackoff: initialBackoff, deadLetterSuffix: nil)
    }

    /// The wait before retry number `attempt` (1-based).
    func backoff(before attempt: Int) -> Duration {
        initialBackoff * (1 << min(attempt - 1, 16))
    }
}

/// Header names on dead-letter records.
public enum KafkaDeadLetterHeader {
    /// The topic the record came from.
    public static let topic = "courier-dlq-topic"
    /// Its partition, as decimal text.
    public static let partition = "courier-dlq-partition"
    /// Its offset, as decimal text.
    public static let offset = "courier-dlq-offset"
    /// The last error the handler threw, as text.
    public static let error = "courier-dlq-error"
    /// How many times the handler ran, as decimal text.
    public static let attempts = "courier-dlq-attempts"
}
