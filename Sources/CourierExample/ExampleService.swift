//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The contracts of the built-in example service, which every transport serves identically.
public enum ExampleService {
    /// `math.sum`: a JSON array of integers in, their sum out.
    public static let sum = MessagePattern<[Int], Int>("math.sum")
    /// `math.countdown`: an integer n ≥ 0 in; streams n, n−1, …, 1, then ends.
    public static let countdown = StreamPattern<Int, Int>("math.countdown")
    /// `math.fail`: always fails with code 422 and the message `"math.fail always fails"`.
    public static let fail = MessagePattern<JSONValue, JSONValue>("math.fail")
    /// `audit.log`: an event; the payload is appended to an in-memory list.
    public static let auditLog = EventPattern<JSONValue>("audit.log")
    /// `audit.count`: no payload; replies how many `audit.log` events were received.
    public static let auditCount = MessagePattern<NoPayload, Int>("audit.count")

    /// `load.tick`: an event that only increments a counter, for event throughput (keeps no payload).
    public static let loadTick = EventPattern<JSONValue>("load.tick")
    /// `load.ticks`: no payload; replies how many `load.tick` events were handled.
    public static let loadTicks = MessagePattern<NoPayload, Int>("load.ticks")
    /// `load.hold`: a number of milliseconds in (0 … 60,000); replies it after sleeping that long, so a caller can
    /// hold many calls in flight at once (the memory benchmark).
    public static let loadHold = MessagePattern<Int, Int>("load.hold")

    /// The message `math.fail` fails with.
    public static let failMessage = "math.fail always fails"

    /// The largest countdown accepted, so a request cannot make the worker stream for ever.
    public static let maxCountdown = 1_000_000

    /// The example handlers, registered on a new router.
    ///
    /// - Parameter audit: Where `audit.log` payloads are kept.
    public static func router(audit: AuditLog = AuditLog()) -> MessageRouter {
        let ticks = TickCounter()
        var router = MessageRouter()
        router.on(sum) { numbers, _ in
            var total = 0
            for number in numbers {
                let (result, overflow) = total.addingReportingOverflow(number)
                guard !overflow else { throw CourierError(.unprocessable, "the sum overflows a 64-bit integer") }
                total = result
            }
            return total
        }
        router.on(countdown) { n, _, replies in
            guard n >= 0, n <= maxCountdown else {
                throw CourierError(.unprocessable, "n must be between 0 and \(maxCountdown), got \(n)")
            }
            for value in stride(from: n, through: 1, by: -1) {
                try await replies.send(value)
            }
        }
        router.on(fail) { request, _ in
            throw CourierError(.unprocessable, failMessage, details: ["request": request])
        }
        router.on(auditLog) { entry, _ in
            audit.append(entry)
        }
        router.on(auditCount) { _, _ in
            audit.count
        }
        router.on(loadTick) { _, _ in
            ticks.value.add(1, ordering: .relaxed)
        }
        router.on(loadTicks) { _, _ in
            ticks.value.load(ordering: .relaxed)
        }
        router.on(loadHold) { milliseconds, _ in
            guard milliseconds >= 0, milliseconds <= 60_000 else {
                throw CourierError(.unprocessable, "milliseconds must be between 0 and 60000, got \(milliseconds)")
            }
            try await Task.sleep(for: .milliseconds(milliseconds))
            return milliseconds
        }
        return router
    }
}

/// The in-memory list behind `audit.log` and `audit.count`, optionally mirrored to a journal file.
public final class AuditLog: Sendable {
    private let entries = Mutex<[JSONValue]>([])
    /// The journal's file descriptor, opened for appending; nil without a journal.
    private let journal: Int32?

    /// An empty log.
    public init() { journal = nil }

    /// An empty log that also appends each entry to the file at `journalPath` as one line of JSON text (created if
    /// missing, never truncated). Each line is written by a single unbuffered `write(2)` on a descriptor opened with
    /// `O_APPEND` before ``append(_:)`` returns, so what a handler recorded survives the process being killed, even
    /// by `SIGKILL`, and several processes can share one journal.
    ///
    /// - Throws: ``CourierError/Code/unprocessable`` if the file cannot be opened for appending.
    public init(journalPath: String) throws {
        let descriptor = open(journalPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            let reason = String(cString: strerror(errno))
            throw CourierError(.unprocessable, "cannot open the audit journal '\(journalPath)': \(reason)")
        }
        journal = descriptor
    }

    deinit {
        if let journal { close(journal) }
    }

    /// Appends an entry (and, with a journal, writes its line).
    public func append(_ entry: JSONValue) {
        entries.withLock { $0.append(entry) }
        if let journal { Self.writeLine(entry.description + "\n", to: journal) }
    }

    /// The number of entries.
    public var count: Int { entries.withLock { $0.count } }

    /// A copy of the entries.
    public var all: [JSONValue] { entries.withLock { $0 } }

    /// Writes `line` with as few `write(2)` calls as the kernel allows (one for a regular file).
    private static func writeLine(_ line: String, to descriptor: Int32) {
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { raw in
                write(descriptor, raw.baseAddress! + offset, raw.count - offset)
            }
            if written < 0, errno == EINTR { continue }
            if written <= 0 { return }
            offset += written
        }
    }
}

/// The counter behind `load.tick` (an atomic, so counting costs no lock).
private final class TickCounter: Sendable {
    let value = Atomic<Int>(0)
}
