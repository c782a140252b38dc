//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierCore
import CourierExample
import CourierRedis
import CourierTCP
import CourierTestSupport
import CourierTesting
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The Python that has `ascender-framework` installed, from `COURIER_ASCENDER_PYTHON`.
let ascenderPython = ProcessInfo.processInfo.environment["COURIER_ASCENDER_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }

/// The real Python `ascender-framework` 2.1.0 against Courier, both ways, over TCP and Redis pub/sub, with the
/// scripts in `Tests/Interop/ascender`. Runs when `COURIER_ASCENDER_PYTHON` names a Python that has the package
/// (`scripts/test` installs one into `.build/ascender/venv`).
@Suite(.serialized, .enabled(if: ascenderPython != nil, "set COURIER_ASCENDER_PYTHON (scripts/test does)"))
struct AscenderInteropTests {
    static let python = ascenderPython

    static let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Interop/ascender")

    /// A Python process; started from a thread of its own so that SIGTERM is not blocked in its signal mask.
    final class Python: @unchecked Sendable {
        // @unchecked: the process is only touched from one test at a time.
        let process = Process()
        let output = Pipe()

        init(_ script: String, _ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: AscenderInteropTests.python!)
            process.arguments = [AscenderInteropTests.scripts.appendingPathComponent(script).path] + arguments
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            TestProcessLedger.record(process.processIdentifier)
        }

        /// The first stdout line (blocking).
        func firstLine() -> String {
            var line = Data()
            while !line.contains(UInt8(ascii: "\n")) {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                line.append(chunk)
            }
            return String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }

        /// Waits for the process to end on its own (blocking); kills it after `timeout` seconds.
        func wait(timeout: TimeInterval) -> Int32 {
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return process.terminationStatus
        }

        func stop() -> Int32 {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            return wait(timeout: 10)
        }

        deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    /// Runs the example service on Ascender's format over `transport` (`tcp` or `redis`) and returns the port the
    /// Python client should use, for the duration of `body`.
    static func withCourierWorker(_ transport: String, redis: RedisServer, _ body: (Int) async throws -> Void)
        async throws
    {
        let server: any ServerTransport
        if transport == "tcp" {
            var configuration = TCPConfiguration(host: "127.0.0.1", port: 0)
            configuration.format = .ascender
            server = TCPServerTransport(configuration: configuration)
        } else {
            server = RedisServerTransport(
                configuration: RedisPubSubConfiguration(connection: redis.configuration, format: .ascender),
                logger: RedisTransportTests.quietLogger
            )
        }
        try await RedisTransportTests.withWorker(server) {
            let port: Int
            if let tcp = server as? TCPServerTransport {
                port = try await tcp.localAddress().port!
            } else {
                try await (server as! RedisServerTransport).waitUntilSubscribed()
                port = redis.port
            }
            try await body(port)
        }
    }

    @Test(arguments: ["tcp", "redis"])
    func anAscenderClientCallsACourierWorker(_ transport: String) async throws {
        try await withRedisServer { redis in
            try await Self.withCourierWorker(transport, redis: redis) { port in
                let (status, line) = try await offThePool {
                    let client = try Python("ascender_client.py", ["--transport", transport, "--port", "\(port)"])
                    let line = client.firstLine()
                    return (client.wait(timeout: 30), line)
                }
                #expect(status == 0, "ascender_client.py exited \(status): \(line)")
                let result = try JSONValue(parsing: line)
                #expect(result["sum"]?.intValue == 6, "\(line)")
                #expect((result["count"]?.intValue ?? 0) >= 1, "\(line)")
            }
        }
    }

    @Test(arguments: ["tcp", "redis"])
    func aCourierClientCallsAnAscenderWorker(_ transport: String) async throws {
        try await withRedisServer { redis in
            let port = transport == "tcp" ? try await freeLoopbackPort() : redis.port
            let worker = try await offThePool {
                try Python("ascender_worker.py", ["--transport", transport, "--port", "\(port)"])
            }
            let ready = try await offThePool { worker.firstLine() }
            #expect(ready == "ready", "ascender_worker.py printed '\(ready)'")

            let clientTransport: any ClientTransport
            if transport == "tcp" {
                var configuration = TCPConfiguration(host: "127.0.0.1", port: port)
                configuration.format = .ascender
                clientTransport = TCPClientTransport(configuration: configuration)
            } else {
                clientTransport = RedisClientTransport(
                    configuration: RedisPubSubConfiguration(connection: redis.configuration, format: .ascender),
                    logger: RedisTransportTests.quietLogger
                )
            }
            let client = CourierClient(transport: clientTransport)
            #expect(try await client.send(ExampleService.sum, [1, 2, 3], timeout: .seconds(10)) == 6)
            try await client.emit(ExampleService.auditLog, ["from": "courier"])
            var count = 0
            for _ in 0..<50 where count == 0 {
                count = try await client.send(ExampleService.auditCount, NoPayload(), timeout: .seconds(10))
                if count == 0 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(count == 1)

            // Ascender answers errors on the request pattern: over TCP that is the caller's socket, and Courier
            // reads the error; over Redis it is the request channel, where no caller listens, so the call times
            // out (as it does for Ascender's own callers).
            let error = await #expect(throws: CourierError.self) {
                _ = try await client.send(ExampleService.fail, [:], timeout: .seconds(2))
            }
            if transport == "tcp" {
                #expect(error?.code == .unprocessable, "\(String(describing: error))")
                #expect(error?.message == "math.fail always fails")
            } else {
                #expect(error?.code == .timedOut, "\(String(describing: error))")
            }
            await client.shutdown()
            let status = try await offThePool { worker.stop() }
            #expect(status == 0, "ascender_worker.py exited \(status) on SIGTERM")
        }
    }
}
