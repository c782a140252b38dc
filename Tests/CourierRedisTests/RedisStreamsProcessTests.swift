//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierExample
import CourierRedis
import CourierTestSupport
import CourierTesting
import Foundation
import Synchronization
import Testing

/// Streams workers as processes of their own (`courier example-worker --transport redis+streams://…`).
@Suite(.serialized) struct RedisStreamsProcessTests {
    /// A `courier example-worker` process; started and stopped from a thread of its own, so its signal mask lets
    /// SIGTERM through.
    final class Worker: @unchecked Sendable {
        // @unchecked: the process is only touched from one test at a time.
        let process = Process()
        let readyLine: String

        init(url: String) throws {
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
                .appendingPathComponent("courier")
            process.arguments = ["example-worker", "--transport", url, "--log-level", "error"]
            let out = Pipe()
            process.standardOutput = out
            process.standardError = FileHandle.nullDevice
            try process.run()
            TestProcessLedger.record(process.processIdentifier)
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = out.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            readyLine = String(decoding: line, as: UTF8.self)
        }

        func kill(_ signal: Int32) {
            if process.isRunning { Foundation.kill(process.processIdentifier, signal) }
            process.waitUntilExit()
        }

        deinit { if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) } }
    }

    /// Two workers share 10,000 requests; one is SIGKILLed midway. Every call gets its own answer exactly once,
    /// the survivor claims what the dead one held, and no entry is left pending.
    @Test func aWorkerKilledDuring10000RequestsLosesNoneAndLeavesNothingPending() async throws {
        try await withRedisServer { redis in
            let url = "redis+streams://127.0.0.1:\(redis.port)?claimIdleMs=1000&claimIntervalMs=200&blockMs=500"
            let first = try await offThePool { try Worker(url: url) }
            let second = try await offThePool { try Worker(url: url) }
            #expect(first.readyLine.hasPrefix("ready redis+streams://"), "\(first.readyLine)")
            #expect(second.readyLine.hasPrefix("ready redis+streams://"), "\(second.readyLine)")

            var configuration = try RedisStreamsConfiguration(url: TransportURL(url))
            configuration.connection.connectTimeout = .seconds(2)
            let client = CourierClient(
                transport: RedisStreamsClientTransport(configuration: configuration, logger: RedisTransportTests.quietLogger)
            )
            let total = 10_000
            final class Progress: Sendable {
                let completed = Atomic(0)
                let next = Atomic(0)
                let wrong = Mutex<[String]>([])
            }
            let progress = Progress()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    // Kill one worker once a fifth of the calls are answered.
                    while progress.completed.load(ordering: .relaxed) < total / 5 { try await Task.sleep(for: .milliseconds(5)) }
                    try await offThePool { first.kill(SIGKILL) }
                }
                let inFlight = 64
                for _ in 0..<inFlight {
                    group.addTask {
                        while true {
                            let index = progress.next.add(1, ordering: .relaxed).oldValue
                            guard index < total else { return }
                            do {
                                let sum = try await client.send(ExampleService.sum, [index, 1], timeout: .seconds(30))
                                if sum != index + 1 { progress.wrong.withLock { $0.append("\(index) → \(sum)") } }
                            } catch {
                                progress.wrong.withLock { $0.append("\(index): \(error)") }
                            }
                            progress.completed.add(1, ordering: .relaxed)
                        }
                    }
                }
                try await group.waitForAll()
            }
            let failures = progress.wrong.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.count) calls went wrong, first: \(failures.prefix(3))")
            #expect(progress.completed.load(ordering: .relaxed) == total)

            let redisClient = try await RedisConnection.connect(configuration: redis.configuration)
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(10)
            var pending = -1
            while pending != 0, clock.now < deadline {
                pending = try await redisClient.send(["XPENDING", "math.sum", RESPArgument(configuration.group)]).array?.first?.int ?? -1
                if pending != 0 { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(pending == 0, "entries left pending")
            let length = try await redisClient.send(["XLEN", "math.sum"]).int
            #expect(length == total)
            await redisClient.close()
            await client.shutdown()
            try await offThePool { second.kill(SIGTERM) }
            #expect(second.process.terminationStatus == 0, "the surviving worker should drain and exit 0 on SIGTERM")
        }
    }
}
