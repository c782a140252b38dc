//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import ArgumentParser
import Courier
import CourierKafka
import CourierRedis
import CourierTCP
import Foundation
import UnixSignals

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure Courier against the raw clients on each transport, and print a table (build with -c release).",
        discussion: """
            For each transport it starts the example worker in its own process and calls it from this process: \
            sequential RPC latency (p50/p99/p99.9), RPC throughput with N calls in flight, events handled per \
            second, streamed-reply elements per second, and the worker's peak RSS. In the same run, a raw \
            baseline does the same round trip with the same socket or library code and no framework (a NIO echo \
            server with the same framing; PUBLISH/SUBSCRIBE ping-pong over the same Redis connection code; \
            librdkafka produce → consume), and the table shows Courier/raw ratios. Both servers run at once and \
            each step alternates the two sides in --rounds rounds, so that both see the same machine. Each step \
            also accounts for \
            the CPU time of this process, the worker (or raw server) and a broker process it started, per call \
            or event, and how many of the machine's cores were busy. Then a worker holds --memory-calls calls in \
            flight and its peak RSS is reported. Each step warms up first. Before the transports, it times \
            Courier's NestJS coding of a TCP call and a Kafka event alone, on one thread (--codec-iterations).

            Transports: tcp, redis (pub/sub), redis-streams, kafka-embedded (librdkafka's mock cluster inside \
            this process), kafka-broker (`courier dev-broker` in its own process, or --kafka-broker URL). Redis \
            needs --redis URL, or a redis-server on PATH, which it starts on a free loopback port and stops after.
            """
    )

    @Option(name: .long, help: "Comma-separated transports to measure.")
    var transports: String = "tcp,redis,redis-streams,kafka-embedded,kafka-broker"

    @Option(name: .long, help: "Seconds each measured step runs.")
    var seconds: Double = 3

    @Option(name: .long, help: "Seconds of warm-up before each transport's measurements.")
    var warmup: Double = 1

    @Option(name: .long, help: "Comma-separated numbers of calls in flight for the throughput steps.")
    var inFlight: String = "1,16,64,256"

    @Option(name: .long, help: "Events per event-throughput step.")
    var events: Int = 100_000

    @Option(name: .long, help: "Tasks emitting events at once in the event step (each emit awaits the transport's acceptance).")
    var emitters: Int = 256

    @Option(
        name: .long,
        help: """
            Events each emitter hands over per call in Courier's event step: 1 emits them one at a time (emit), more \
            in batches of this many (emitBatch).
            """
    )
    var emitBatch: Int = 1

    @Option(name: .long, help: "Elements per streamed reply (math.countdown).")
    var streamLength: Int = 10_000

    @Option(name: .long, help: "Calls a worker holds in flight for the memory figure (0 skips it).")
    var memoryCalls: Int = 10_000

    @Option(
        name: .long,
        help: """
            Runs of the codec-alone loop (Courier's NestJS encodes and decodes of a TCP call and a Kafka event on one \
            thread, reported beside the targets); 0 skips it.
            """
    )
    var codecIterations: Int = 200_000

    @Option(name: .long, help: "A Redis server to use (redis://HOST:PORT); default: start redis-server from PATH.")
    var redis: String?

    @Option(name: .long, help: "A Kafka broker for kafka-broker (kafka://HOST:PORT); default: start courier dev-broker.")
    var kafkaBroker: String?

    @Flag(
        name: .long,
        help: """
            Make Courier's TCP, Kafka and Redis pub/sub emits await their write or the broker's acknowledgement \
            (default: not, like the raw loops, which pipeline their events).
            """
    )
    var eventAcks = false

    @Flag(name: .long, help: "Skip the raw baselines.")
    var noRaw = false

    @Option(
        name: .long,
        help: """
            Split each step into this many rounds that alternate Courier and the raw baseline (both servers up), so \
            that both sides see the same machine; 1: Courier's steps, then the raw baseline's.
            """
    )
    var rounds: Int = 3

    @Option(name: .long, help: "Also write the report as JSON to this file.")
    var json: String?

    static let allTransports = ["tcp", "redis", "redis-streams", "kafka-embedded", "kafka-broker"]

    func validate() throws {
        for name in selectedTransports where !Self.allTransports.contains(name) {
            throw ValidationError("unknown transport '\(name)'; known: \(Self.allTransports.joined(separator: ", "))")
        }
        try validateSeconds(seconds, "--seconds")
        try validateSeconds(warmup, "--warmup", allowZero: true)
        guard !inFlightCounts.isEmpty, inFlightCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--in-flight must list positive numbers, e.g. 1,16,64,256")
        }
        guard (1...20).contains(rounds) else { throw ValidationError("--rounds must be 1 to 20") }
        guard events >= 1, emitters >= 1, emitBatch >= 1, streamLength >= 1, memoryCalls >= 0, codecIterations >= 0 else {
            throw ValidationError(
                "--events, --emitters, --emit-batch and --stream-length must be ≥ 1, --memory-calls and --codec-iterations ≥ 0"
            )
        }
    }

    var selectedTransports: [String] {
        transports.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    var inFlightCounts: [Int] {
        inFlight.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    }

    func run() async throws {
        bootstrapLogging(level: "error")
        #if DEBUG
        writeAll("bench: this is a debug build; figures are only meaningful with `swift build -c release`\n", to: 2)
        #endif
        let runner = BenchRunner(options: self)
        let report: BenchReport
        do {
            report = try await runner.run()
        } catch {
            printError(error)
            throw ExitCode(1)
        }
        printLine("")
        printLine(report.table)
        if let json {
            do {
                try report.json().write(to: URL(fileURLWithPath: json))
                printLine("\nwrote \(json)")
            } catch {
                printError(error)
                throw ExitCode(1)
            }
        }
    }
}

/// The raw baselines' echo servers, in a process of their own like the worker (used by `courier bench`).
struct BenchRawServer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-raw-server",
        abstract: "Serve the raw (no-framework) echo baseline for `courier bench`.",
        discussion: "Prints 'ready <url>' once it serves; SIGTERM stops it.",
        shouldDisplay: false
    )

    @Option(name: .long, help: "tcp://HOST:PORT, redis://HOST:PORT or kafka://HOST:PORT[,HOST:PORT...].")
    var transport: String

    func run() async throws {
        bootstrapLogging(level: "error")
        let url = try TransportURL(transport)
        let endpoint = url.endpoints.first
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                switch url.scheme {
                case "tcp":
                    try await RawTCPEchoServer.serve(host: endpoint?.host ?? "127.0.0.1", port: endpoint?.port ?? 0) { port in
                        printLine("ready tcp://\(endpoint?.host ?? "127.0.0.1"):\(port)")
                    }
                case "redis":
                    try await RawRedisEchoServer.serve(configuration: try RedisConfiguration(url: url)) {
                        printLine("ready \(url)")
                    }
                case "kafka":
                    let bootstrap = url.endpoints.map { "\($0.host):\($0.port ?? 9092)" }.joined(separator: ",")
                    try await RawKafkaEchoServer.serve(bootstrapServers: bootstrap,
                                                       properties: BenchKafkaSettings.properties) {
                        printLine("ready kafka://\(bootstrap)")
                    }
                default:
                    throw ValidationError("bench-raw-server serves tcp://, redis:// and kafka://, not \(url.scheme)://")
                }
            }
            group.addTask {
                // Stop on SIGTERM/SIGINT (the bench stops it by PID).
                for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { return }
            }
            try await group.next()
            group.cancelAll()
        }
    }
}
