//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Foundation

/// The processes whose CPU time a step accounts for, besides the bench process itself (the client, and for the
/// embedded Kafka cluster the broker too).
struct BenchProcesses: Sendable {
    /// The worker, or the raw baseline's echo server or responder.
    var worker: Int32?
    /// A broker in a process of its own (`redis-server`, `courier dev-broker`) that this run started.
    var broker: Int32?
}

/// CPU time as the kernel accounts it: the bench process's own (`getrusage`), other processes' from
/// `/proc/<pid>/stat` (in clock ticks, 10 ms here), and the whole machine's from `/proc/stat`.
struct BenchCPUSnapshot: Sendable {
    var client: Double
    var worker: Double?
    var broker: Double?
    var machineBusyTicks: UInt64
    var machineTotalTicks: UInt64

    static func now(_ processes: BenchProcesses) -> BenchCPUSnapshot {
        let machine = machineTicks()
        return BenchCPUSnapshot(
            client: selfSeconds(),
            worker: processes.worker.flatMap(processSeconds),
            broker: processes.broker.flatMap(processSeconds),
            machineBusyTicks: machine.busy,
            machineTotalTicks: machine.total
        )
    }

    /// What was used from `start` to this snapshot, for `units` calls or events.
    func since(_ start: BenchCPUSnapshot, units: Int) -> BenchReport.CPU {
        func delta(_ end: Double?, _ begin: Double?) -> Double? {
            guard let end, let begin else { return nil }
            return ((end - begin) * 1000).rounded() / 1000
        }
        let total = machineTotalTicks &- start.machineTotalTicks
        let busy = machineBusyTicks &- start.machineBusyTicks
        let cores = Double(ProcessInfo.processInfo.activeProcessorCount)
        return BenchReport.CPU(
            units: units,
            clientSeconds: delta(client, start.client) ?? 0,
            workerSeconds: delta(worker, start.worker),
            brokerSeconds: delta(broker, start.broker),
            busyCores: total > 0 ? (Double(busy) / Double(total) * cores * 100).rounded() / 100 : nil
        )
    }

    /// User and system time of this process so far, in seconds.
    static func selfSeconds() -> Double {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// User and system time of process `pid` so far, in seconds; nil once it is gone.
    static func processSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = stat.lastIndex(of: ")")
        else { return nil }
        // After the command name in parentheses come the fields from the state (field 3) on; utime and stime are
        // fields 14 and 15.
        let fields = stat[stat.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The machine's busy and total clock ticks so far (all cores), from `/proc/stat`'s first line: busy is user,
    /// nice, system, irq and softirq time; idle, waiting for I/O and time the hypervisor took (steal) are not.
    static func machineTicks() -> (busy: UInt64, total: UInt64) {
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = stat.split(separator: "\n").first
        else { return (0, 0) }
        let ticks = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        // user nice system idle iowait irq softirq steal; guest time is already in user.
        guard ticks.count >= 8 else { return (0, 0) }
        return (ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6], ticks.prefix(8).reduce(0, +))
    }
}
