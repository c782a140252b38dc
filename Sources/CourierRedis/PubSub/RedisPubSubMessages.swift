//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The messages a ``RedisSubscriber`` receives, in the order Redis sent them, across reconnections.
///
/// Backpressure: once ``RedisConfiguration/subscriberBufferSize`` messages wait here, the subscriber stops
/// reading from its socket until the buffer drains to a quarter of that. The sequence ends when the subscriber
/// is closed. Iterate it once (it is a single-consumer sequence); stopping the iteration drops later messages.
public struct RedisPubSubMessages: AsyncSequence, Sendable {
    /// A received message.
    public typealias Element = RedisPubSubMessage
    typealias Producer = NIOAsyncSequenceProducer<
        RedisPubSubMessage,
        NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark,
        RedisPubSubDemand
    >

    let producer: Producer

    /// Iterates the messages.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: Producer.AsyncIterator

        /// The next message, or `nil` once the subscriber is closed.
        @concurrent public mutating func next() async -> RedisPubSubMessage? {
            await base.next()
        }
    }

    /// Makes the (only) iterator.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: producer.makeAsyncIterator())
    }
}

/// Tells the subscriber's event loop when its consumer wants more messages again.
final class RedisPubSubDemand: NIOAsyncSequenceProducerDelegate {
    private let sink: NIOLoopBoundBox<RedisPubSubSink?>

    init(eventLoop: any EventLoop) {
        sink = .makeEmptyBox(valueType: RedisPubSubSink.self, eventLoop: eventLoop)
    }

    /// Connects the delegate to its sink; called once, on the event loop, right after the sequence is made.
    func attach(_ sink: RedisPubSubSink) {
        self.sink.value = sink
    }

    func produceMore() {
        sink.eventLoop.execute { self.sink.value?.consumerWantsMore() }
    }

    func didTerminate() {
        sink.eventLoop.execute { self.sink.value?.consumerWantsMore() }
    }
}

/// The event-loop side of ``RedisPubSubMessages``: connection handlers deliver into it, and it tells them whether
/// to keep reading from the socket.
final class RedisPubSubSink {
    private let source: RedisPubSubMessages.Producer.Source
    /// Whether the consumer wants more; when not, the current connection stops reading.
    private(set) var wantsMore = true
    /// Resumes reading on the current connection, if it held back a read; set by that connection's handler.
    var resumeReading: (() -> Void)?

    private init(source: RedisPubSubMessages.Producer.Source) {
        self.source = source
    }

    /// Makes the sequence and its sink; call on `eventLoop`.
    static func make(bufferSize: Int, eventLoop: any EventLoop) -> (RedisPubSubSink, RedisPubSubMessages) {
        let demand = RedisPubSubDemand(eventLoop: eventLoop)
        let high = max(bufferSize, 1)
        let made = RedisPubSubMessages.Producer.makeSequence(
            backPressureStrategy: NIOAsyncSequenceProducerBackPressureStrategies.HighLowWatermark(
                lowWatermark: high / 4,
                highWatermark: high
            ),
            finishOnDeinit: false,
            delegate: demand
        )
        let sink = RedisPubSubSink(source: made.source)
        demand.attach(sink)
        return (sink, RedisPubSubMessages(producer: made.sequence))
    }

    /// Hands a message to the consumer; records whether it wants more.
    func deliver(_ message: RedisPubSubMessage) {
        switch source.yield(message) {
        case .produceMore, .dropped: wantsMore = true  // dropped: nobody iterates; keep reading and discard
        case .stopProducing: wantsMore = false
        }
    }

    func consumerWantsMore() {
        guard !wantsMore else { return }
        wantsMore = true
        resumeReading?()
    }

    /// Ends the sequence after the messages already delivered.
    func finish() {
        resumeReading = nil
        source.finish()
    }
}
