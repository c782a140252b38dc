//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierKafka
import CourierTCP
import NIOCore

/// The CPU that the bench's messages cost in Courier's wire-format code alone: the NestJS encodes and decodes a TCP
/// call and a Kafka event go through on both sides, run back to back on one thread.
///
/// The raw baselines skip this work (the echo server returns the bytes it read; the raw Kafka loop produces a fixed
/// value and only counts what it consumes), while any framework that speaks the NestJS format and hands typed
/// values to handlers must do it. So `raw / (raw + codec)`, with raw's CPU per call or event from the same run,
/// bounds the share of raw such a framework could reach at raw's cores busy. The loop runs with warm caches, so
/// the figure is a lower bound of what the codec costs inside a real call, and the bound is generous.
enum BenchCodec {
    /// Microseconds per TCP call (the request and the reply, both sides) and per Kafka event (both sides).
    static func measure(iterations: Int = 200_000) throws -> BenchReport.Codec {
        let format = TCPWireFormat.nestJS
        let coder = PayloadCoder()
        var parser = NestFrameParser(maxFrameLength: 1 << 20)

        // What `courier bench` sends: math.sum [1,2,3] → 6, and load.tick events carrying [1,2,3].
        func call() throws {
            // The client encodes the payload and frames the request.
            let request = WireRequest(pattern: "math.sum", payload: try coder.encode([1, 2, 3]),
                                      correlationID: CorrelationID.make(), timeout: .seconds(30))
            var wire = format.frame(request)
            // The worker reads the frame, decodes the envelope and the payload, and frames the reply.
            guard let requestBody = try parser.nextFrame(in: &wire), case .request(let received)? = try format.decode(requestBody),
                let id = received.correlationID
            else { throw CourierError(.unprocessable, "codec loop: the request did not decode") }
            let sum = try coder.decode([Int].self, from: received.payload).reduce(0, +)
            var replyWire = format.frame(WireReply(correlationID: id, response: try coder.encode(sum), isDisposed: true))
            // The client reads the reply's frame and envelope, and decodes the value.
            guard let replyBody = try parser.nextFrame(in: &replyWire), case .reply(let reply)? = try format.decode(replyBody),
                try coder.decode(Int.self, from: reply.response) == 6
            else { throw CourierError(.unprocessable, "codec loop: the reply did not decode") }
        }

        // `emitCopies` encodes an event's payload once for all its copies, so per event the client builds the
        // record; the worker decodes it and parses the payload for the handler (`load.tick` takes a JSONValue).
        let eventPayload = try coder.encode(JSONValue.array([1, 2, 3]))
        func event() throws {
            let record = try KafkaRecordCodec.encodeEvent(WireRequest(pattern: "load.tick", payload: eventPayload,
                                                                      correlationID: nil))
            let inbound = KafkaRecordCodec.decodeRequest(record)
            guard case .array(let values) = try coder.decode(JSONValue.self, from: inbound.request.payload),
                values.count == 3
            else { throw CourierError(.unprocessable, "codec loop: the event did not decode") }
        }

        return BenchReport.Codec(
            tcpCallMicros: try microseconds(iterations: iterations, call),
            kafkaEventMicros: try microseconds(iterations: iterations, event),
            iterations: iterations
        )
    }

    /// The time per run of `body`: the best of five rounds of a fifth of `iterations` each, after a tenth as many
    /// runs to warm up. The best round, because this machine's speed changes within seconds and the figure is
    /// meant as the codec's least cost.
    private static func microseconds(iterations: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<max(iterations / 10, 1) { try body() }
        let clock = ContinuousClock()
        let perRound = max(iterations / 5, 1)
        var best = Double.infinity
        for _ in 0..<5 {
            let started = clock.now
            for _ in 0..<perRound { try body() }
            best = min(best, (clock.now - started).inSeconds / Double(perRound))
        }
        return (best * 1e6 * 100).rounded() / 100
    }
}
