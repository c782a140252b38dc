//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Foundation

/// A process the benchmark started (a worker, a raw echo server, a broker), stopped by its PID.
// @unchecked: Foundation's Process is not marked Sendable; only its thread-safe members (pid, isRunning) are used
// after it started.
final class BenchProcess: @unchecked Sendable {
    let name: String
    /// What followed `ready ` on the process's first such line (usually its URL), or "" for processes checked
    /// otherwise.
    let ready: String
    private let process: Process

    private init(name: String, ready: String, process: Process) {
        self.name = name
        self.ready = ready
        self.process = process
    }

    var pid: Int32 { process.processIdentifier }

    /// Starts `executable` and waits for it to print a line `ready <text>` on stdout.
    ///
    /// - Throws: ``CourierError`` (`transportUnavailable`) if it exits first or takes longer than `timeout`.
    static func start(
        name: String,
        executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        timeout: Duration = .seconds(60)
    ) async throws -> BenchProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        let output = Pipe()
        process.standardOutput = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let readyLine = OneShot<String?>()
        // Reads stdout on a thread of its own (a blocking read never runs on the cooperative pool), and keeps
        // draining it after `ready` so the child never blocks on a full pipe.
        let reader = Thread {
            var pending = Data()
            var announced = false
            while true {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                guard !announced else { continue }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    if line.hasPrefix("ready") {
                        announced = true
                        readyLine.deliver(String(line.dropFirst(5)).trimmingCharacters(in: .whitespaces))
                        break
                    }
                }
            }
            readyLine.deliver(nil)
        }
        reader.start()
        let started = BenchProcess(name: name, ready: "", process: process)
        let line = try await withThrowingTaskGroup(of: String?.self) { group in
            group.addTask { await readyLine.value }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let line else {
            await started.stop()
            throw CourierError(.transportUnavailable,
                               "\(name) did not print 'ready' within \(timeout) (or exited): \(executable) \(arguments.joined(separator: " "))")
        }
        return BenchProcess(name: name, ready: line, process: process)
    }

    /// Starts a process that announces nothing, then waits until `isReady` holds (polled every 50 ms).
    static func start(
        name: String,
        executable: String,
        arguments: [String],
        timeout: Duration = .seconds(30),
        until isReady: @Sendable () async -> Bool
    ) async throws -> BenchProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let started = BenchProcess(name: name, ready: "", process: process)
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline, process.isRunning {
            if await isReady() { return started }
            try await Task.sleep(for: .milliseconds(50))
        }
        await started.stop()
        throw CourierError(.transportUnavailable, "\(name) did not become ready within \(timeout)")
    }

    /// The process's peak resident set size so far (`VmHWM`), in MiB; nil once it exited.
    var peakRSSMiB: Double? {
        Self.statusField("VmHWM", pid: pid).map { Double($0) / 1024 }
    }

    /// The current resident set size (`VmRSS`), in MiB.
    var rssMiB: Double? {
        Self.statusField("VmRSS", pid: pid).map { Double($0) / 1024 }
    }

    /// A `kB` field of `/proc/<pid>/status`.
    static func statusField(_ field: String, pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
            return Int(line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces).split(separator: " ")[0])
        }
        return nil
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    func stop(grace: Duration = .seconds(10)) async {
        guard process.isRunning else { return }
        kill(pid, SIGTERM)
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while process.isRunning, clock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            kill(pid, SIGKILL)
            while process.isRunning { try? await Task.sleep(for: .milliseconds(20)) }
        }
    }
}

/// Facts about this machine and its software, for the report.
enum BenchMachine {
    static func describe() -> BenchReport.Machine {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        let memoryKiB = meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }
            .flatMap { Int($0.dropFirst(9).trimmingCharacters(in: .whitespaces).split(separator: " ")[0]) }
        let osRelease = (try? String(contentsOfFile: "/etc/os-release", encoding: .utf8)) ?? ""
        let os = osRelease.split(separator: "\n").first { $0.hasPrefix("PRETTY_NAME=") }
            .map { $0.dropFirst(12).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
        let kernel = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return BenchReport.Machine(
            cpuModel: model ?? "unknown",
            cores: ProcessInfo.processInfo.activeProcessorCount,
            memoryGiB: memoryKiB.map { (Double($0) / 1024 / 1024 * 10).rounded() / 10 },
            kernel: kernel,
            os: os,
            swift: run("swift", ["--version"]).flatMap { text in
                text.range(of: #"Swift version [0-9.]+"#, options: .regularExpression)
                    .map { String(text[$0].dropFirst(14)) }
            },
            librdkafka: debianVersion("librdkafka1"),
            hiredis: debianVersion("libhiredis0.14") ?? debianVersion("libhiredis1.1.0"),
            redisServer: debianVersion("redis-server")
        )
    }

    /// The short commit of the working directory's git checkout, if any.
    static func commit() -> String? {
        run("git", ["rev-parse", "--short", "HEAD"])?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static func debianVersion(_ package: String) -> String? {
        guard let version = run("dpkg-query", ["-W", "-f", "${Version}", package]), !version.isEmpty else { return nil }
        return version
    }

    /// Runs a short command through `/usr/bin/env` and returns its stdout, or nil if it failed.
    static func run(_ command: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [command] + arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        do { try process.run() } catch { return nil }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// A free TCP port on 127.0.0.1 (bound and released; good enough for servers started right after).
    static func freePort() throws -> Int {
        let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socket >= 0 else { throw CourierError(.transportUnavailable, "cannot create a socket") }
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(socket, generic, length) == 0 && getsockname(socket, generic, &length) == 0
            }
        }
        guard bound else { throw CourierError(.transportUnavailable, "cannot bind a loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The path of the running `courier` executable.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}
