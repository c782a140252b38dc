//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation
import Histogram

/// What `courier bench` measured; `--json` writes it, `scripts/bench-report.py` renders it.
struct BenchReport: Codable, Sendable {
    struct Machine: Codable, Sendable {
        var cpuModel: String
        var cores: Int
        var memoryGiB: Double?
        var kernel: String?
        var os: String?
        var swift: String?
        var librdkafka: String?
        var hiredis: String?
        var redisServer: String?
    }

    struct Settings: Codable, Sendable {
        var seconds: Double
        var warmupSeconds: Double
        var eventCount: Int
        /// Tasks emitting at once in Courier's event step (absent in reports written before the option existed).
        var emitters: Int?
        /// Events per emit call in Courier's event step (`emitBatch` above 1; absent in older reports: 1).
        var emitBatch: Int?
        /// Whether Courier's emits awaited their acknowledgement (the broker's, or on TCP their write), on the
        /// transports `eventAcksTransports` names (absent in older reports: they did; reports from 2026-11-22 name
        /// it `kafkaEventAcks` and it covered Kafka only).
        var eventAcks: Bool?
        /// The transports `eventAcks` applied to (absent in older reports: Kafka and Redis pub/sub).
        var eventAcksTransports: [String]?
        var streamLength: Int
        var inFlight: [Int]
        var payload: String
        var kafkaProperties: [String: String]
        /// Rounds per step alternating Courier and the raw baseline (absent in older reports: 1, Courier's steps
        /// then the baseline's).
        var rounds: Int?
    }

    struct Percentile: Codable, Sendable {
        var percentile: Double
        var micros: Double
    }

    struct Latency: Codable, Sendable {
        var calls: Int
        var p50Micros: Double
        var p90Micros: Double
        var p99Micros: Double
        var p999Micros: Double
        var maxMicros: Double
        var percentiles: [Percentile]

        init(_ histogram: Histogram<UInt64>) {
            func micros(_ nanoseconds: UInt64) -> Double { (Double(nanoseconds) / 100).rounded() / 10 }
            calls = Int(histogram.totalCount)
            p50Micros = micros(histogram.valueAtPercentile(50))
            p90Micros = micros(histogram.valueAtPercentile(90))
            p99Micros = micros(histogram.valueAtPercentile(99))
            p999Micros = micros(histogram.valueAtPercentile(99.9))
            maxMicros = micros(histogram.max)
            var points: [Percentile] = []
            for percentile in [0.0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100] {
                points.append(Percentile(percentile: percentile, micros: micros(histogram.valueAtPercentile(percentile))))
            }
            percentiles = points
        }
    }

    struct Throughput: Codable, Sendable {
        var inFlight: Int
        var callsPerSecond: Double
        var calls: Int
        /// The CPU the step used (absent in reports written before 2026-11-23).
        var cpu: CPU?
    }

    /// The CPU time one step used, per process, and how busy the whole machine was meanwhile.
    struct CPU: Codable, Sendable {
        /// The sum of two steps' CPU (rounds of one figure); busy cores weighted by each step's duration.
        static func combined(_ a: CPU?, _ b: CPU, secondsA: Double, secondsB: Double) -> CPU {
            guard let a else { return b }
            func sum(_ x: Double?, _ y: Double?) -> Double? { x.map { $0 + (y ?? 0) } ?? y }
            let busy: Double? = if let x = a.busyCores, let y = b.busyCores, secondsA + secondsB > 0 {
                ((x * secondsA + y * secondsB) / (secondsA + secondsB) * 100).rounded() / 100
            } else { a.busyCores ?? b.busyCores }
            return CPU(units: a.units + b.units, clientSeconds: a.clientSeconds + b.clientSeconds,
                       workerSeconds: sum(a.workerSeconds, b.workerSeconds),
                       brokerSeconds: sum(a.brokerSeconds, b.brokerSeconds), busyCores: busy)
        }

        /// Calls or events the step counted.
        var units: Int
        /// The bench process: the client (and, for the embedded Kafka cluster, the broker; for the raw Kafka
        /// baseline's events, the consumer too).
        var clientSeconds: Double
        /// The worker (or the raw baseline's server) process.
        var workerSeconds: Double?
        /// A broker in a process of its own that the run started.
        var brokerSeconds: Double?
        /// The machine's busy time over the step's duration, in cores (every process, not only these).
        var busyCores: Double?

        /// All three processes' CPU per call or event, in microseconds.
        var totalMicrosPerUnit: Double? {
            guard units > 0 else { return nil }
            return (clientSeconds + (workerSeconds ?? 0) + (brokerSeconds ?? 0)) / Double(units) * 1e6
        }
    }

    struct Side: Codable, Sendable {
        var latency: Latency?
        var throughput: [Throughput] = []
        var eventsPerSecond: Double?
        /// The CPU the events step used.
        var eventsCPU: CPU?
        var streamElementsPerSecond: Double?
        var workerPeakRSSMiB: Double?
        /// Steps that failed, with their error (a failure is reported, and the run goes on).
        var failures: [String] = []

        func callsPerSecond(inFlight: Int) -> Double? {
            throughput.first { $0.inFlight == inFlight }?.callsPerSecond
        }
    }

    struct Ratio: Codable, Sendable {
        var inFlight: Int
        var ratio: Double
    }

    struct Ratios: Codable, Sendable {
        var throughput: [Ratio] = []
        var latencyP50: Double?
        var events: Double?
    }

    struct Transport: Codable, Sendable {
        var id: String
        var title: String
        var courier: Side
        var raw: Side?
        var ratios: Ratios

        init(id: String, title: String, courier: Side, raw: Side?) {
            self.id = id
            self.title = title
            self.courier = courier
            self.raw = raw
            var ratios = Ratios()
            if let raw {
                for point in courier.throughput {
                    if let base = raw.callsPerSecond(inFlight: point.inFlight), base > 0 {
                        ratios.throughput.append(Ratio(inFlight: point.inFlight, ratio: Self.round(point.callsPerSecond / base)))
                    }
                }
                if let mine = courier.latency?.p50Micros, let base = raw.latency?.p50Micros, base > 0 {
                    ratios.latencyP50 = Self.round(mine / base)
                }
                if let mine = courier.eventsPerSecond, let base = raw.eventsPerSecond, base > 0 {
                    ratios.events = Self.round(mine / base)
                }
            }
            self.ratios = ratios
        }

        static func round(_ value: Double) -> Double { (value * 100).rounded() / 100 }
    }

    struct Memory: Codable, Sendable {
        var transport: String
        var inFlight: Int
        var workerPeakRSSMiB: Double?
        /// The worker's peak RSS after connecting, before the calls.
        var idleRSSMiB: Double?
        var calls: Int
        var failures: Int
    }

    /// Courier's wire-format work per message alone, on one thread (``BenchCodec``).
    struct Codec: Codable, Sendable {
        /// A TCP call's NestJS encodes and decodes on both sides, in microseconds.
        var tcpCallMicros: Double
        /// A Kafka event's record and payload coding on both sides, in microseconds.
        var kafkaEventMicros: Double
        var iterations: Int

        /// The most of raw's throughput that a side doing raw's work plus `micros` could reach at raw's cores
        /// busy: `raw / (raw + micros)`, from raw's CPU per call or event.
        static func ceiling(rawMicros: Double, plus micros: Double) -> Double { rawMicros / (rawMicros + micros) }
    }

    struct Target: Codable, Sendable {
        var name: String
        var figure: String
        var met: Bool
    }

    var date: String
    var courierCommit: String?
    var machine: Machine
    var settings: Settings
    var transports: [Transport] = []
    var memory: Memory?
    /// Absent in reports written before 2026-11-24.
    var codec: Codec?
    var targets: [Target] = []
}

// MARK: - Targets

extension BenchReport {
    /// Issue 5's targets, checked against this run's figures (a target whose figures were not measured is left out).
    mutating func evaluateTargets() {
        var targets: [Target] = []
        func transport(_ id: String) -> Transport? { transports.first { $0.id == id } }
        func rate(_ value: Double) -> String { Self.grouped(value) }

        if let tcp = transport("tcp") {
            if let mine = tcp.courier.callsPerSecond(inFlight: 64), let raw = tcp.raw?.callsPerSecond(inFlight: 64) {
                let ratio = mine / raw
                let rawCPU = tcp.raw?.throughput.first { $0.inFlight == 64 }?.cpu?.totalMicrosPerUnit
                targets.append(Target(name: "TCP: RPC with 64 in flight ≥ 80 % of the raw echo",
                                      figure: "\(Self.percent(ratio)) (\(rate(mine)) vs \(rate(raw)) calls/s)"
                                          + codecCeiling(rawMicros: rawCPU, plus: codec?.tcpCallMicros),
                                      met: ratio >= 0.8))
            }
            if let mine = tcp.courier.callsPerSecond(inFlight: 64) {
                targets.append(Target(name: "TCP: RPC with 64 in flight ≥ 100,000 calls/s",
                                      figure: "\(rate(mine)) calls/s", met: mine >= 100_000))
            }
            if let mine = tcp.courier.latency?.p50Micros, let raw = tcp.raw?.latency?.p50Micros {
                targets.append(Target(name: "TCP: sequential p50 ≤ 1.5 × raw",
                                      figure: "\(Self.hundredths(mine / raw))× (\(mine) vs \(raw) µs)",
                                      met: mine <= 1.5 * raw))
            }
        }
        if let redis = transport("redis") {
            if let mine = redis.courier.callsPerSecond(inFlight: 64), let raw = redis.raw?.callsPerSecond(inFlight: 64) {
                let ratio = mine / raw
                targets.append(Target(name: "Redis pub/sub: RPC with 64 in flight ≥ 50 % of the raw ping-pong",
                                      figure: "\(Self.percent(ratio)) (\(rate(mine)) vs \(rate(raw)) calls/s)",
                                      met: ratio >= 0.5))
            }
            if let events = redis.courier.eventsPerSecond {
                targets.append(Target(name: "Redis pub/sub: ≥ 100,000 events/s handled",
                                      figure: "\(rate(events)) events/s", met: events >= 100_000))
            }
        }
        if let kafka = transport("kafka-embedded") {
            if let mine = kafka.courier.eventsPerSecond, let raw = kafka.raw?.eventsPerSecond {
                let ratio = mine / raw
                targets.append(Target(name: "Kafka (embedded): events handled ≥ 80 % of raw produce → consume",
                                      figure: "\(Self.percent(ratio)) (\(rate(mine)) vs \(rate(raw)) events/s)"
                                          + codecCeiling(rawMicros: kafka.raw?.eventsCPU?.totalMicrosPerUnit,
                                                         plus: codec?.kafkaEventMicros),
                                      met: ratio >= 0.8))
            }
            if let mine = kafka.courier.callsPerSecond(inFlight: 256) {
                targets.append(Target(name: "Kafka (embedded): RPC ≥ 10,000 calls/s with 256 in flight",
                                      figure: "\(rate(mine)) calls/s", met: mine >= 10_000))
            }
            if let mine = kafka.courier.latency?.p50Micros, let raw = kafka.raw?.latency?.p50Micros {
                let gap = (mine - raw) / 1000
                targets.append(Target(name: "Kafka (embedded): sequential p50 within 1 ms of the raw round trip",
                                      figure: "\(Self.decimal(gap)) ms (\(mine) vs \(raw) µs)", met: gap <= 1))
            }
        }
        if let memory, let peak = memory.workerPeakRSSMiB {
            targets.append(Target(name: "Memory: a worker holding \(Self.grouped(Double(memory.inFlight))) calls in flight ≤ 100 MiB RSS",
                                  figure: "\(Self.decimal(peak)) MiB peak", met: peak <= 100 && memory.failures == 0))
        }
        self.targets = targets
    }

    /// "; the codec alone: at most N %", when both figures were measured.
    private func codecCeiling(rawMicros: Double?, plus codecMicros: Double?) -> String {
        guard let rawMicros, let codecMicros, rawMicros > 0 else { return "" }
        let ceiling = Codec.ceiling(rawMicros: rawMicros, plus: codecMicros)
        return "; raw's \(Self.decimal(rawMicros)) µs per unit plus the codec's \(Self.hundredths(codecMicros)) "
            + "leave at most \(Self.percent(ceiling))"
    }

    static func grouped(_ value: Double) -> String {
        let whole = Int(value.rounded())
        var digits = String(whole)
        var result = ""
        while digits.count > 3 {
            result = "," + digits.suffix(3) + result
            digits.removeLast(3)
        }
        return digits + result
    }

    static func percent(_ ratio: Double) -> String { "\(Int((ratio * 100).rounded())) %" }

    static func decimal(_ value: Double) -> String {
        let tenths = Int((value * 10).rounded())
        return "\(tenths / 10).\(abs(tenths % 10))"
    }

    /// Two decimals, for a ratio compared with a threshold of one decimal (1.55 must not print as a missed 1.5).
    static func hundredths(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = abs(hundredths % 100)
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}

// MARK: - Table

extension BenchReport {
    /// The human-readable summary `courier bench` prints at the end.
    var table: String {
        var lines: [String] = []
        let inFlight = settings.inFlight
        var header = ["transport", "side", "p50 µs", "p99 µs", "p99.9 µs"]
        header += inFlight.map { "\($0) in flight/s" }
        header += ["events/s", "stream el/s", "worker MiB"]
        // CPU per call at the most calls in flight measured up to 64 (the targets' figure), and per event.
        let cpuInFlight = inFlight.filter { $0 <= 64 }.max() ?? inFlight.max() ?? 64
        header += ["CPU µs/call@\(cpuInFlight)", "CPU µs/event", "cores@\(cpuInFlight)"]
        var rows: [[String]] = [header]
        for transport in transports {
            for (side, values) in [("courier", transport.courier), ("raw", transport.raw)] {
                guard let values else { continue }
                var row = [transport.title, side]
                row.append(values.latency.map { Self.decimal($0.p50Micros) } ?? "–")
                row.append(values.latency.map { Self.decimal($0.p99Micros) } ?? "–")
                row.append(values.latency.map { Self.decimal($0.p999Micros) } ?? "–")
                row += inFlight.map { n in values.callsPerSecond(inFlight: n).map(Self.grouped) ?? "–" }
                row.append(values.eventsPerSecond.map(Self.grouped) ?? "–")
                row.append(values.streamElementsPerSecond.map(Self.grouped) ?? "–")
                row.append(values.workerPeakRSSMiB.map(Self.decimal) ?? "–")
                let cpu = values.throughput.first { $0.inFlight == cpuInFlight }?.cpu
                row.append(cpu?.totalMicrosPerUnit.map(Self.decimal) ?? "–")
                row.append(values.eventsCPU?.totalMicrosPerUnit.map(Self.decimal) ?? "–")
                row.append(cpu?.busyCores.map { String(format: "%.2f", $0) } ?? "–")
                rows.append(row)
            }
            if transport.raw != nil {
                var row = [transport.title, "courier/raw"]
                row.append(transport.ratios.latencyP50.map { "\($0)×" } ?? "–")
                row += ["", ""]
                row += inFlight.map { n in
                    transport.ratios.throughput.first { $0.inFlight == n }.map { Self.percent($0.ratio) } ?? "–"
                }
                row.append(transport.ratios.events.map(Self.percent) ?? "–")
                row += ["", "", "", "", ""]
                rows.append(row)
            }
        }
        let widths = (0..<header.count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for (index, row) in rows.enumerated() {
            let cells = row.enumerated().map { column, cell in
                column < 2 ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: widths[column] - cell.count) + cell
            }
            lines.append(cells.joined(separator: "  "))
            if index == 0 { lines.append(widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")) }
        }
        if let codec {
            lines.append("")
            lines.append("codec alone (NestJS encodes and decodes, both sides, one thread): "
                + "\(Self.hundredths(codec.tcpCallMicros)) µs per TCP call, "
                + "\(Self.hundredths(codec.kafkaEventMicros)) µs per Kafka event")
        }
        if let memory {
            lines.append("")
            lines.append("memory: a \(memory.transport) worker holding \(Self.grouped(Double(memory.inFlight))) calls in "
                + "flight: peak RSS \(memory.workerPeakRSSMiB.map(Self.decimal) ?? "?") MiB (idle "
                + "\(memory.idleRSSMiB.map(Self.decimal) ?? "?") MiB), \(memory.failures) failed calls")
        }
        let failures = transports.flatMap { transport in
            (transport.courier.failures.map { "\(transport.title) courier: \($0)" })
                + (transport.raw?.failures.map { "\(transport.title) raw: \($0)" } ?? [])
        }
        if !failures.isEmpty {
            lines.append("")
            lines += failures.map { "failed: \($0)" }
        }
        if !targets.isEmpty {
            lines.append("")
            for target in targets {
                lines.append("\(target.met ? "met   " : "MISSED") \(target.name): \(target.figure)")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// The report as pretty-printed JSON.
    func json() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}
