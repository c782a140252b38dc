//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Logging
import Synchronization

/// A worker's second producer, for the elements of streamed replies when its main producer may reorder them.
///
/// librdkafka keeps the order of one partition's messages through retries when at most one produce request is in
/// flight per broker connection (`max.in.flight.requests.per.connection=1`), or with an idempotent producer. The main
/// producer has neither by default (one request at a time would hold back every single reply), so a stream's
/// elements used to wait each for the previous one's acknowledgement. This producer has one request in flight, so
/// they are enqueued one after another and batched instead. It is created when a worker first streams, and closed
/// with the worker.
final class KafkaStreamReplyProducer: Sendable {
    private enum State {
        case idle
        case open(KafkaProducer)
        case closed
    }

    private let state = Mutex(State.idle)
    private let bootstrapServers: String
    private let properties: [String: String]
    private let logger: Logger
    private let onFatal: @Sendable (CourierError) -> Void

    /// - Parameters:
    ///   - bootstrapServers: The cluster.
    ///   - properties: The main producer's properties; one request in flight per connection is set over them.
    ///   - onFatal: Called with the producer's fatal error, if it gets one.
    init(
        bootstrapServers: String,
        properties: [String: String],
        logger: Logger,
        onFatal: @escaping @Sendable (CourierError) -> Void
    ) {
        self.bootstrapServers = bootstrapServers
        var ordered = properties
        ordered.removeValue(forKey: "max.in.flight")
        ordered[Self.inFlightProperty] = "1"
        self.properties = ordered
        self.logger = logger
        self.onFatal = onFatal
    }

    static let inFlightProperty = "max.in.flight.requests.per.connection"

    /// Whether a producer with `properties` keeps one partition's messages in order through retries, so that a
    /// stream's elements need no second producer.
    static func keepsOrder(_ properties: [String: String]) -> Bool {
        properties["enable.idempotence"] == "true"
            || (properties[inFlightProperty] ?? properties["max.in.flight"]) == "1"
    }

    /// The producer, created on first use.
    ///
    /// - Throws: ``CourierError/Code/transportUnavailable`` once the worker closed it, or why librdkafka could not
    ///   create it.
    func producer() throws -> KafkaProducer {
        try state.withLock { state in
            switch state {
            case .open(let producer):
                return producer
            case .closed:
                throw CourierError.unavailable("the Kafka worker is stopping")
            case .idle:
                let producer = try KafkaProducer(bootstrapServers: bootstrapServers, properties: properties,
                                                 logger: logger)
                producer.whenFatal(onFatal)
                state = .open(producer)
                return producer
            }
        }
    }

    /// The producer's fatal error, if it was created and got one.
    var fatalError: CourierError? {
        state.withLock { if case .open(let producer) = $0 { producer.fatalError } else { nil } }
    }

    /// Whether the producer was created (for tests).
    var isOpen: Bool {
        state.withLock { if case .open = $0 { true } else { false } }
    }

    /// Closes the producer, if it was created, flushing what it holds for at most `flushTimeout`; later uses fail.
    func close(flushTimeout: Duration = .seconds(10)) async {
        let open = state.withLock { state -> KafkaProducer? in
            defer { state = .closed }
            if case .open(let producer) = state { return producer }
            return nil
        }
        await open?.close(flushTimeout: flushTimeout)
    }
}
