//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierExample
import CourierKafka
import CourierRedis
import CourierTCP
import Foundation
import NIOCore
import NIOPosix

/// Runs `courier bench`: per transport, start what it needs, measure Courier and the raw baseline, stop them.
struct BenchRunner {
    let options: Bench
    private let clock = ContinuousClock()
    private let executable = BenchMachine.executablePath

    init(options: Bench) {
        self.options = options
    }

    /// Topics created before the Kafka workers start (the embedded cluster has no admin API; auto-created topics
    /// get 4 partitions).
    static let kafkaTopics: [String: Int] = [
        "math.sum": 4, "math.countdown": 4, "load.tick": 4, "load.ticks": 1, "load.hold": 4,
        "math.sum.reply": 1, "math.countdown.reply": 1, "load.ticks.reply": 1, "load.hold.reply": 1,
        "raw.request": 4, "raw.reply": 1, "raw.event": 4,
    ]

    func run() async throws -> BenchReport {
        var report = BenchReport(
            date: ISO8601DateFormatter().string(from: Date()),
            courierCommit: BenchMachine.commit(),
            machine: BenchMachine.describe(),
            settings: BenchReport.Settings(
                seconds: options.seconds,
                warmupSeconds: options.warmup,
                eventCount: options.events,
                emitters: options.emitters,
                emitBatch: options.emitBatch,
                eventAcks: options.eventAcks,
                eventAcksTransports: ["tcp", "redis", "kafka"],
                streamLength: options.streamLength,
                inFlight: options.inFlightCounts,
                payload: "[1,2,3]",
                kafkaProperties: BenchKafkaSettings.properties,
                rounds: options.rounds
            )
        )
        let selected = options.selectedTransports
        if options.codecIterations > 0, selected.contains("tcp") || selected.contains("kafka-embedded") {
            progressLine("measuring the codec alone")
            report.codec = try BenchCodec.measure(iterations: options.codecIterations)
        }
        var redisServer: BenchProcess?
        var redisURL = options.redis
        if redisURL == nil, selected.contains(where: { $0.hasPrefix("redis") }) {
            let port = try BenchMachine.freePort()
            progressLine("starting redis-server on 127.0.0.1:\(port)")
            redisServer = try await BenchProcess.start(
                name: "redis-server",
                executable: "/usr/bin/env",
                arguments: ["redis-server", "--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            ) {
                (try? await RawConnectCheck.connects(host: "127.0.0.1", port: port)) ?? false
            }
            redisURL = "redis://127.0.0.1:\(port)"
        }
        do {
            try await measureTransports(selected, redisURL: redisURL, redisPID: redisServer?.pid, into: &report)
        } catch {
            await redisServer?.stop()
            throw error
        }
        await redisServer?.stop()
        if options.memoryCalls > 0 {
            report.memory = try await measureMemory()
        }
        report.evaluateTargets()
        return report
    }

    private func measureTransports(
        _ selected: [String],
        redisURL: String?,
        redisPID: Int32?,
        into report: inout BenchReport
    ) async throws {
        for transport in selected {
            let measured: BenchReport.Transport
            switch transport {
            case "tcp":
                measured = try await measure(id: "tcp", title: "TCP", courierURL: "tcp://127.0.0.1:0",
                                             clientOptions: "eventAcks=\(options.eventAcks)",
                                             rawURL: options.noRaw ? nil : "tcp://127.0.0.1:0")
            case "redis":
                measured = try await measure(id: "redis", title: "Redis pub/sub", courierURL: redisURL!,
                                             clientOptions: "eventAcks=\(options.eventAcks)",
                                             rawURL: options.noRaw ? nil : redisURL!, broker: redisPID)
            case "redis-streams":
                let url = redisURL!.replacingOccurrences(of: "redis://", with: "redis+streams://")
                measured = try await measure(id: "redis-streams", title: "Redis Streams", courierURL: url, rawURL: nil,
                                             broker: redisPID)
            case "kafka-embedded":
                let cluster = try await EmbeddedKafkaCluster(topics: Self.kafkaTopics)
                defer { cluster.close() }
                measured = try await measureKafka(id: "kafka-embedded", title: "Kafka (embedded)",
                                                  bootstrap: cluster.bootstrapServers)
            case "kafka-broker":
                var broker: BenchProcess?
                let bootstrap: String
                if let given = options.kafkaBroker {
                    bootstrap = try TransportURL(given).endpoints.map { "\($0.host):\($0.port ?? 9092)" }
                        .joined(separator: ",")
                } else {
                    progressLine("starting courier dev-broker")
                    let started = try await BenchProcess.start(
                        name: "dev-broker", executable: executable,
                        arguments: ["dev-broker"] + Self.kafkaTopics.sorted { $0.key < $1.key }
                            .flatMap { ["--topic", "\($0.key):\($0.value)"] }
                    )
                    broker = started
                    bootstrap = String(started.ready.dropFirst("kafka://".count))
                }
                do {
                    measured = try await measureKafka(id: "kafka-broker", title: "Kafka (broker process)",
                                                      bootstrap: bootstrap, broker: broker?.pid)
                } catch {
                    await broker?.stop()
                    throw error
                }
                await broker?.stop()
            default:
                continue
            }
            report.transports.append(measured)
        }
    }

    // MARK: Transports

    private func measureKafka(
        id: String,
        title: String,
        bootstrap: String,
        broker: Int32? = nil
    ) async throws -> BenchReport.Transport {
        let query = BenchKafkaSettings.properties.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            .joined(separator: "&")
        // The client gets the same librdkafka settings as the worker and the raw baseline, and by default emits
        // without awaiting each event's acknowledgement, as the raw produce loop does.
        return try await measure(id: id, title: title, courierURL: "kafka://\(bootstrap)?\(query)",
                                 clientOptions: query + "&eventAcks=\(options.eventAcks)",
                                 rawURL: options.noRaw ? nil : "kafka://\(bootstrap)", broker: broker)
    }

    /// Measures Courier (worker process + client here) and then, with `rawURL`, the raw baseline.
    ///
    /// The client calls the URL the worker printed when ready, plus `clientOptions` (query options) if given.
    /// `broker` is the process ID of a broker this run started, whose CPU time the steps then account for.
    private func measure(id: String, title: String, courierURL: String, clientOptions: String? = nil,
                         rawURL: String?, broker: Int32? = nil) async throws -> BenchReport.Transport
    {
        if options.rounds > 1, let rawURL {
            return try await measureInRounds(id: id, title: title, courierURL: courierURL, clientOptions: clientOptions,
                                             rawURL: rawURL, broker: broker)
        }
        progressLine("\(title): starting the example worker")
        let worker = try await BenchProcess.start(
            name: "example-worker", executable: executable,
            arguments: ["example-worker", "--transport", courierURL, "--log-level", "error"]
        )
        var courier: BenchReport.Side
        do {
            let subject = try courierSubject(worker: worker, url: courierURL, clientOptions: clientOptions)
            courier = await measureSteps([Contender(subject: subject, label: "\(title) courier", streams: true,
                                                    processes: BenchProcesses(worker: worker.pid, broker: broker))])[0]
            await subject.shutdown()
            courier.workerPeakRSSMiB = worker.peakRSSMiB
        } catch {
            await worker.stop()
            throw error
        }
        await worker.stop()

        guard let rawURL else { return BenchReport.Transport(id: id, title: title, courier: courier, raw: nil) }
        progressLine("\(title): starting the raw echo server")
        let server = try await BenchProcess.start(
            name: "bench-raw-server", executable: executable,
            arguments: ["bench-raw-server", "--transport", rawURL]
        )
        var raw: BenchReport.Side
        do {
            let subject = try await rawSubject(url: try TransportURL(server.ready))
            raw = await measureSteps([Contender(subject: subject, label: "\(title) raw", streams: false,
                                                processes: BenchProcesses(worker: server.pid, broker: broker))])[0]
            await subject.shutdown()
            raw.workerPeakRSSMiB = server.peakRSSMiB
        } catch {
            await server.stop()
            throw error
        }
        await server.stop()
        return BenchReport.Transport(id: id, title: title, courier: courier, raw: raw)
    }

    /// ``measure(id:title:courierURL:clientOptions:rawURL:broker:)`` with both servers up at once and each step
    /// split into `options.rounds` rounds that alternate the two sides (Courier then raw, then raw then Courier, …),
    /// so that a change in the machine's speed during the run affects both sides alike.
    private func measureInRounds(id: String, title: String, courierURL: String, clientOptions: String?,
                                 rawURL: String, broker: Int32?) async throws -> BenchReport.Transport
    {
        progressLine("\(title): starting the example worker and the raw echo server")
        let worker = try await BenchProcess.start(
            name: "example-worker", executable: executable,
            arguments: ["example-worker", "--transport", courierURL, "--log-level", "error"]
        )
        let server: BenchProcess
        do {
            server = try await BenchProcess.start(name: "bench-raw-server", executable: executable,
                                                  arguments: ["bench-raw-server", "--transport", rawURL])
        } catch {
            await worker.stop()
            throw error
        }
        var sides: [BenchReport.Side]
        do {
            let courier = try courierSubject(worker: worker, url: courierURL, clientOptions: clientOptions)
            let raw = try await rawSubject(url: try TransportURL(server.ready))
            sides = await measureSteps([
                Contender(subject: courier, label: "\(title) courier", streams: true,
                          processes: BenchProcesses(worker: worker.pid, broker: broker)),
                Contender(subject: raw, label: "\(title) raw", streams: false,
                          processes: BenchProcesses(worker: server.pid, broker: broker)),
            ])
            await courier.shutdown()
            await raw.shutdown()
            sides[0].workerPeakRSSMiB = worker.peakRSSMiB
            sides[1].workerPeakRSSMiB = server.peakRSSMiB
        } catch {
            await worker.stop()
            await server.stop()
            throw error
        }
        await worker.stop()
        await server.stop()
        return BenchReport.Transport(id: id, title: title, courier: sides[0], raw: sides[1])
    }

    /// Courier's client calling `worker`: at the URL the worker printed when ready (or `url`), plus `clientOptions`
    /// (query options) if given.
    private func courierSubject(worker: BenchProcess, url: String, clientOptions: String?) throws -> CourierSubject {
        var clientURL = worker.ready.isEmpty ? url : worker.ready
        if let clientOptions { clientURL += (clientURL.contains("?") ? "&" : "?") + clientOptions }
        let client = CourierClient(
            transport: try TransportFactory.client(for: clientURL),
            configuration: ClientConfiguration(defaultTimeout: .seconds(30))
        )
        return CourierSubject(client: client, emitters: options.emitters, emitBatch: options.emitBatch,
                              streamLength: options.streamLength)
    }

    /// One side of a comparison measured in rounds.
    private struct Contender {
        let subject: any BenchSubject
        let label: String
        let streams: Bool
        let processes: BenchProcesses
    }

    /// Runs every step on the contenders (one, or Courier and the raw baseline), each step in `options.rounds`
    /// rounds alternating them; a side's figure is its total over the rounds (calls over their summed duration,
    /// latencies in one histogram). A failed step is recorded and the others still run; after a failed warm-up, a
    /// side runs no step.
    private func measureSteps(_ contenders: [Contender]) async -> [BenchReport.Side] {
        var sides = contenders.map { _ in BenchReport.Side() }
        var failed = contenders.map { _ in false }
        // Rounds only alternate sides: one side alone (no raw baseline, or --rounds 1) runs each step in one go.
        let rounds = contenders.count > 1 ? options.rounds : 1
        let roundSeconds = Duration.seconds(options.seconds / Double(rounds))
        /// Runs `body` for each contender in each round, alternating who goes first; returns each side's
        /// (count, seconds, CPU) summed over the rounds, or nil for a side whose step failed.
        func inRounds(
            _ name: String,
            timeout: Duration,
            _ body: @escaping @Sendable (_ side: Int, _ round: Int, BenchCounter) async throws -> Void
        ) async -> [(Int, Double, BenchReport.CPU)?] {
            var totals: [(Int, Double, BenchReport.CPU)?] = contenders.map { _ in nil }
            var stepFailed = contenders.map { _ in false }
            for round in 0..<rounds {
                let order = round % 2 == 0 ? Array(contenders.indices) : contenders.indices.reversed()
                for index in order where !failed[index] && !stepFailed[index] {
                    let contender = contenders[index]
                    do {
                        let label = rounds > 1 ? "\(contender.label): \(name) (round \(round + 1) of \(rounds))"
                            : "\(contender.label): \(name)"
                        let (count, elapsed, cpu) = try await step(label, timeout: timeout,
                                                                   processes: contender.processes) { counter in
                            try await body(index, round, counter)
                        }
                        let previous = totals[index]
                        totals[index] = (
                            (previous?.0 ?? 0) + count, (previous?.1 ?? 0) + elapsed,
                            BenchReport.CPU.combined(previous?.2, cpu, secondsA: previous?.1 ?? 0, secondsB: elapsed)
                        )
                    } catch {
                        sides[index].failures.append("\(name): \(error)")
                        stepFailed[index] = true
                        totals[index] = nil
                    }
                }
            }
            return totals
        }
        if options.warmup > 0 {
            for (index, contender) in contenders.enumerated() {
                do {
                    _ = try await step("\(contender.label): warm-up", timeout: .seconds(60),
                                       processes: contender.processes) { counter in
                        try await contender.subject.roundTrips(inFlight: 64, until: clock.now + .seconds(options.warmup),
                                                               counter: counter, latencies: nil)
                    }
                } catch {
                    sides[index].failures.append("warm-up: \(error)")
                    failed[index] = true
                }
            }
        }
        let recorders = contenders.map { _ in LatencyRecorder() }
        let subjects = contenders.map(\.subject)
        let sequential = await inRounds("sequential latency", timeout: roundSeconds + .seconds(60)) { side, _, counter in
            try await subjects[side].roundTrips(inFlight: 1, until: clock.now + roundSeconds, counter: counter,
                                                latencies: recorders[side])
        }
        for index in contenders.indices where sequential[index] != nil {
            sides[index].latency = BenchReport.Latency(recorders[index].snapshot)
        }
        for inFlight in options.inFlightCounts {
            let totals = await inRounds("\(inFlight) in flight", timeout: roundSeconds + .seconds(60)) { side, _, counter in
                try await subjects[side].roundTrips(inFlight: inFlight, until: clock.now + roundSeconds,
                                                    counter: counter, latencies: nil)
            }
            for (index, total) in totals.enumerated() {
                guard let (calls, elapsed, cpu) = total else { continue }
                sides[index].throughput.append(BenchReport.Throughput(
                    inFlight: inFlight, callsPerSecond: Double(calls) / elapsed, calls: calls, cpu: cpu))
            }
        }
        // The events split over the rounds; the first rounds take one more each where they do not divide evenly.
        let total = options.events
        let events = await inRounds("\(total) events", timeout: .seconds(120)) { side, round, counter in
            let count = total / rounds + (round < total % rounds ? 1 : 0)
            if count > 0 { try await subjects[side].events(count: count, counter: counter) }
        }
        for (index, measured) in events.enumerated() {
            guard let (_, elapsed, cpu) = measured else { continue }
            sides[index].eventsPerSecond = Double(total) / elapsed
            var eventsCPU = cpu
            // Per event emitted: the counter follows the worker's count as polled, which need not end exactly there.
            eventsCPU.units = total
            sides[index].eventsCPU = eventsCPU
        }
        for (index, contender) in contenders.enumerated() where contender.streams && !failed[index] {
            let seconds = Duration.seconds(options.seconds)
            do {
                let (elements, elapsed, _) = try await step("\(contender.label): streamed replies",
                                                            timeout: seconds + .seconds(60),
                                                            processes: contender.processes) { counter in
                    _ = try await contender.subject.streamedElements(until: clock.now + seconds, counter: counter)
                }
                sides[index].streamElementsPerSecond = Double(elements) / elapsed
            } catch {
                sides[index].failures.append("streamed replies: \(error)")
            }
        }
        return sides
    }

    private func rawSubject(url: TransportURL) async throws -> any BenchSubject {
        switch url.scheme {
        case "tcp":
            return try await RawTCPSubject.connect(host: url.endpoints[0].host, port: url.endpoints[0].port ?? 0)
        case "redis":
            return try await RawRedisSubject.connect(configuration: try RedisConfiguration(url: url))
        case "kafka":
            return try await RawKafkaSubject.connect(
                bootstrapServers: url.endpoints.map { "\($0.host):\($0.port ?? 9092)" }.joined(separator: ","),
                properties: BenchKafkaSettings.properties
            )
        default:
            throw CourierError(.unprocessable, "no raw baseline for \(url.scheme)")
        }
    }

    // MARK: Steps

    /// Runs one step with a progress line; returns what it counted, how long it took (in seconds) and the CPU time
    /// the bench process, `processes` and the machine used meanwhile.
    private func step(
        _ label: String,
        timeout: Duration,
        processes: BenchProcesses = BenchProcesses(),
        _ body: @escaping @Sendable (BenchCounter) async throws -> Void
    ) async throws -> (Int, Double, BenchReport.CPU) {
        let counter = BenchCounter()
        let cpuAtStart = BenchCPUSnapshot.now(processes)
        let start = clock.now
        let progress = Task {
            guard isatty(2) != 0 else { return }
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(250))
                let elapsed = start.duration(to: clock.now).inSeconds
                let count = counter.count
                writeAll("\r\u{1B}[K\(label): \(BenchReport.grouped(Double(count))) in \(String(format2: elapsed)) s"
                    + " (\(BenchReport.grouped(Double(count) / max(elapsed, 0.001)))/s)", to: 2)
            }
        }
        defer { progress.cancel() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await body(counter) }
            group.addTask {
                try await Task.sleep(for: timeout)
                throw CourierError(.timedOut, "\(label) did not finish within \(timeout) (counted \(counter.count))")
            }
            try await group.next()
            group.cancelAll()
        }
        let elapsed = start.duration(to: clock.now).inSeconds
        let count = counter.count
        let cpu = BenchCPUSnapshot.now(processes).since(cpuAtStart, units: count)
        progress.cancel()
        let line = "\(label): \(BenchReport.grouped(Double(count))) in \(String(format2: elapsed)) s = "
            + "\(BenchReport.grouped(Double(count) / max(elapsed, 0.001)))/s"
        writeAll((isatty(2) != 0 ? "\r\u{1B}[K" : "") + line + "\n", to: 2)
        return (count, elapsed, cpu)
    }

    private func progressLine(_ text: String) {
        writeAll((isatty(2) != 0 ? "\r\u{1B}[K" : "") + text + "\n", to: 2)
    }

    // MARK: Memory

    /// A TCP worker holding `memoryCalls` calls (`load.hold`, 2 s each) at once: its peak RSS.
    private func measureMemory() async throws -> BenchReport.Memory {
        let calls = options.memoryCalls
        progressLine("memory: a TCP worker holding \(calls) calls in flight")
        let worker = try await BenchProcess.start(
            name: "example-worker", executable: executable,
            arguments: ["example-worker", "--transport", "tcp://127.0.0.1:0", "--log-level", "error",
                        "--max-concurrent-handlers", "\(calls)"]
        )
        let client: CourierClient
        let answered: Int
        let idle: Double?
        do {
            client = CourierClient(transport: try TransportFactory.client(for: worker.ready),
                                   configuration: ClientConfiguration(defaultTimeout: .seconds(60)))
            _ = try? await client.send(ExampleService.sum, [1])
            idle = worker.rssMiB
            (answered, _, _) = try await step("memory: \(calls) calls holding 2 s", timeout: .seconds(120)) { counter in
                await withDiscardingTaskGroup { group in
                    for _ in 0..<calls {
                        group.addTask {
                            if (try? await client.send(ExampleService.loadHold, 2_000)) != nil { counter.add() }
                        }
                    }
                }
            }
        } catch {
            await worker.stop()  // a worker this step started is stopped whatever happens
            throw error
        }
        let failed = calls - answered
        let peak = worker.peakRSSMiB
        await client.shutdown()
        await worker.stop()
        return BenchReport.Memory(transport: "tcp", inFlight: calls, workerPeakRSSMiB: peak, idleRSSMiB: idle,
                                  calls: calls, failures: failed)
    }
}

/// Whether something listens on a loopback port (to see that a server started).
enum RawConnectCheck {
    static func connects(host: String, port: Int) async throws -> Bool {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(200))
            .connect(host: host, port: port)
            .get()
        try? await channel.close()
        return true
    }
}
