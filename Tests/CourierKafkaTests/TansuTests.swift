//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Courier
import CourierExample
import CourierKafka
import CourierTestSupport
import CourierTesting
import Foundation
import Logging
import Synchronization
import Testing

/// The tansu broker's `host:port`, from `COURIER_TANSU_BOOTSTRAP`.
private let tansuBootstrap = ProcessInfo.processInfo.environment["COURIER_TANSU_BOOTSTRAP"]

/// The independent-broker tier: a tansu broker that `scripts/test` starts in a process of its own (memory only, a
/// free loopback port, passed as `COURIER_TANSU_BOOTSTRAP`), reached by `courier` processes and by Courier clients
/// in this process through the newer librdkafka that `scripts/test` puts on `LD_LIBRARY_PATH` (Debian's 2.0.2
/// cannot talk to tansu). Consumer groups here are real: joins, rebalances, committed offsets, a SIGKILLed member.
///
/// The broker is shared by every test and may outlive a run, so each test uses its own groups, reply topics and a
/// run tag in its events. The example worker's `audit.log` topic is shared: its tests start their groups at the
/// topic's end (``startGroupAtEnd(_:topic:partitions:)``) and count only their own events.
@Suite(.serialized, .enabled(if: tansuBootstrap != nil, "set COURIER_TANSU_BOOTSTRAP (scripts/test does)"))
struct TansuTests {
    static var bootstrap: String? { tansuBootstrap }

    /// Fast group joins and rebalances (tansu joins in about session.timeout.ms / 2).
    static let fastGroup = "session.timeout.ms=6000&heartbeat.interval.ms=1000"

    /// A worker URL for group `group`.
    static func workerURL(group: String) -> String {
        "kafka://\(bootstrap!)?group=\(group)&\(fastGroup)"
    }

    /// A fresh tag for one test's topics, groups and events.
    static func runTag() -> String { String(UUID().uuidString.prefix(8)).lowercased() }

    /// A Courier client in this process (emits wait for the broker's acknowledgement) whose replies go to partition 0
    /// of its own new reply topic.
    static func makeClient(tag: String) async throws -> CourierClient {
        let replies = "tansu.replies.\(tag)"
        try await createTopics([replies: 1])
        var configuration = KafkaConfiguration(bootstrapServers: bootstrap!)
        // An emit that the broker does not acknowledge fails after 30 s (librdkafka's default: 300 s).
        configuration.producerProperties["message.timeout.ms"] = "30000"
        return CourierClient(
            transport: KafkaClientTransport(
                configuration: configuration,
                replyTo: .partition(0, of: replies),
                logger: KafkaMockHarness.quietLogger
            ),
            configuration: ClientConfiguration(defaultTimeout: .seconds(30))
        )
    }

    // MARK: The library in use

    @Test func theLoadedLibrdkafkaIsAtLeast2_1() {
        let version = rd_kafka_version()
        let text = String(cString: rd_kafka_version_str())
        print("tansu tier: librdkafka \(text) (0x\(String(version, radix: 16))), tansu at \(Self.bootstrap ?? "?")")
        // 0xMMmmrrxx: 2.1.0 is 0x020100ff. Debian's 2.0.2 cannot parse tansu's ApiVersions reply.
        #expect(version >= 0x0201_0000, "librdkafka \(text) is loaded; put the newer one on LD_LIBRARY_PATH")
    }

    // MARK: (4) Dead letters

    @Test func aFailingEventLandsOnItsDeadLetterTopicWithItsHeaders() async throws {
        let tag = Self.runTag()
        let topic = "tansu.bad.\(tag)"
        try await Self.createTopics([topic: 1, topic + ".dlq": 1])
        var configuration = KafkaConfiguration(bootstrapServers: Self.bootstrap!, groupID: "tansu-dlq-\(tag)")
        configuration.consumerProperties.merge(KafkaConsumerTests.fastGroup) { _, new in new }
        configuration.eventFailures = .deadLetter(retries: 2, initialBackoff: .milliseconds(10))
        let attempts = Atomic<Int>(0)
        var router = MessageRouter()
        router.on(EventPattern<Int>(topic)) { _, _ in
            attempts.add(1, ordering: .relaxed)
            throw CourierError(.unprocessable, "always fails")
        }
        let server = KafkaServerTransport(configuration: configuration, logger: KafkaMockHarness.quietLogger)
        let worker = Microservice(router: router, transport: server, logger: KafkaMockHarness.quietLogger)
        let client = try await Self.makeClient(tag: tag)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await worker.run() }
            defer { group.cancelAll() }
            try await Self.within(.seconds(30), "the worker's first group join") { await server.waitUntilAssigned() }
            try await client.emit(topic, json: 7, headers: ["trace": "t-1"])
            let parked = try await offThePool {
                try readBlocking(bootstrapServers: Self.bootstrap!, topic: topic + ".dlq", partitions: 1, count: 1,
                                 timeout: 30)
            }
            let record = try #require(parked.first, "no record on \(topic).dlq within 30 s")
            #expect(record.value == Array("7".utf8))
            let headers = Dictionary(
                record.headers.map { ($0.name, String(decoding: $0.value ?? [], as: UTF8.self)) },
                uniquingKeysWith: { _, last in last }
            )
            #expect(headers["trace"] == "t-1")
            #expect(headers[KafkaDeadLetterHeader.topic] == topic)
            #expect(headers[KafkaDeadLetterHeader.partition] == "0")
            #expect(headers[KafkaDeadLetterHeader.offset] == "0")
            #expect(headers[KafkaDeadLetterHeader.attempts] == "3")
            #expect(headers[KafkaDeadLetterHeader.error]?.contains("always fails") == true)
        }
        await client.shutdown()
        #expect(attempts.load(ordering: .relaxed) == 3)
    }

    // MARK: (1) Two workers in one group, a rebalance

    @Test func twoWorkersShareTheTopicAndARebalanceLosesNothing() async throws {
        let tag = Self.runTag()
        let folder = try Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await Self.createTopics(["audit.log": 4])
        #expect(try await Self.partitionCount(of: "audit.log") == 4)
        let group = "tansu-rebalance-\(tag)"
        try await offThePool { try Self.startGroupAtEnd(group, topic: "audit.log", partitions: 4) }
        let url = Self.workerURL(group: group)
        let journals = [folder.appendingPathComponent("a.jsonl"), folder.appendingPathComponent("b.jsonl")]
        let a = try await Self.startWorker(url: url, journal: journals[0], log: folder.appendingPathComponent("a.log"))
        defer { a.kill() }
        let b = try await Self.startWorker(url: url, journal: journals[1], log: folder.appendingPathComponent("b.log"))
        defer { b.kill() }

        let client = try await Self.makeClient(tag: tag)
        func emit(_ numbers: Range<Int>) async throws {
            for n in numbers {
                try await client.emit(ExampleService.auditLog, ["run": .string(tag), "n": .integer(Int64(n))])
            }
        }
        try await emit(0..<200)
        let shared = try await Self.waitForJournals(journals, tag: tag, count: 200, timeout: 30)
        #expect(shared.distinct == 200, "handled \(shared.distinct) of 200 events with both workers up")
        let perWorker = try await offThePool { try journals.map { try Journal.read($0, tag: tag).lines } }
        print("tansu tier: rebalance: worker A handled \(perWorker[0]), worker B \(perWorker[1]) of 200")
        #expect(perWorker[0] > 0 && perWorker[1] > 0, "both members should own partitions: \(perWorker)")

        // Worker B leaves (graceful): its partitions move to A while events keep coming.
        try await emit(200..<350)
        b.signal(SIGTERM)
        try await emit(350..<500)
        let status = try await offThePool { b.waitForExit(timeout: 20) }
        #expect(status == 0, "worker B exited with \(String(describing: status)): \(b.logTail)")
        let all = try await Self.waitForJournals(journals, tag: tag, count: 500, timeout: 45)
        print("tansu tier: rebalance: \(all.distinct) of 500 events handled, \(all.duplicates) duplicates")
        let lost = Set(0..<500).subtracting(all.numbers).sorted()
        #expect(all.distinct == 500, "events lost across the rebalance, e.g. \(lost.prefix(20)); A: \(a.logTail)")
        if all.distinct != 500 { Self.keep(folder) }

        await client.shutdown()
        a.signal(SIGTERM)
        #expect(try await offThePool { a.waitForExit(timeout: 20) } == 0)
    }

    // MARK: (3) Two client processes

    /// Each caller produces to a topic of its own (`math.sum`, `audit.count`): tansu 0.6.0 loses acknowledged
    /// records when two producers write to one partition at the same time (measured with confluent-kafka alone: of
    /// 2 x 5,000 acknowledged records, 1 to 6 were missing from the partition), which would lose requests here.
    @Test func twoClientProcessesEachGetAllTheirReplies() async throws {
        let tag = Self.runTag()
        let folder = try Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        let replies = "tansu.replies.\(tag)"
        try await Self.createTopics(["math.sum": 4, "audit.count": 4, "audit.log": 4, replies: 2])
        // The worker's group starts at audit.log's end, so it counts no audit.log event: audit.count replies 0.
        let group = "tansu-rpc-\(tag)"
        try await offThePool { try Self.startGroupAtEnd(group, topic: "audit.log", partitions: 4) }
        let worker = try await Self.startWorker(url: Self.workerURL(group: group), journal: nil,
                                                log: folder.appendingPathComponent("worker.log"))
        defer { worker.kill() }

        let callers = [(partition: 0, call: ["math.sum", "[1,2,3]"], expected: "6"),
                       (partition: 1, call: ["audit.count"], expected: "0")]
        let processes = try callers.map { caller in
            try Child(
                ["send",
                 "--transport", "kafka://\(Self.bootstrap!)?replyTopic=\(replies)&replyPartition=\(caller.partition)",
                 "--count", "1000", "--in-flight", "32", "--timeout", "30", "--log-level", "error"] + caller.call,
                log: folder.appendingPathComponent("send-\(caller.partition).log")
            )
        }
        defer { for process in processes { process.kill() } }
        let started = Date()
        let results = try await offThePool {
            processes.map { process in (process.waitForExit(timeout: 120), process.readStdout()) }
        }
        let seconds = Date().timeIntervalSince(started)
        var allReplied = true
        for (caller, (process, result)) in zip(callers, zip(processes, results)) {
            let summary = result.1.trimmingCharacters(in: .newlines)
            print("tansu tier: two callers: partition \(caller.partition): \(summary)")
            let replied = result.0 == 0 && result.1.contains("calls=1000 replies=1000 failures=0")
                && result.1.contains("values: \(caller.expected) x1000")
            #expect(replied, """
                caller \(caller.partition) exited with \(String(describing: result.0)), printed '\(summary)'; \
                \(process.logTail); worker: \(worker.logTail)
                """)
            allReplied = allReplied && replied
        }
        if !allReplied { Self.keep(folder) }
        print("tansu tier: two callers: 2 x 1,000 calls in \(String(format: "%.1f", seconds)) s")
        worker.signal(SIGTERM)
        #expect(try await offThePool { worker.waitForExit(timeout: 20) } == 0)
    }

    // MARK: (4) A streamed reply

    /// A stream's elements after the first go out through the worker's second producer (one request in flight per
    /// connection, which keeps them in order): against an independent broker, 2,000 elements arrive complete and in
    /// order, and so do the streams after it on the same producer.
    @Test func streamedRepliesArriveCompleteAndInOrder() async throws {
        let tag = Self.runTag()
        let folder = try Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await Self.createTopics(["math.sum": 4, "math.countdown": 2, "audit.count": 4, "audit.log": 4])
        let worker = try await Self.startWorker(url: Self.workerURL(group: "tansu-stream-\(tag)"), journal: nil,
                                                log: folder.appendingPathComponent("worker.log"))
        defer { worker.kill() }
        let client = try await Self.makeClient(tag: tag)
        var complete = true
        for length in [2_000, 3, 500] {
            let elements = try await client.sendStream(ExampleService.countdown, length, timeout: .seconds(60))
                .collect()
            let expected = Array((1...length).reversed())
            #expect(elements == expected, "\(elements.count) of \(length) elements; worker: \(worker.logTail)")
            complete = complete && elements == expected
        }
        await client.shutdown()
        if !complete { Self.keep(folder) }
        worker.signal(SIGTERM)
        #expect(try await offThePool { worker.waitForExit(timeout: 20) } == 0)
    }

    // MARK: (2) SIGKILL mid-stream

    @Test func aWorkerKilledMidStreamLosesNoEventAfterARestart() async throws {
        let tag = Self.runTag()
        let total = 10_000
        let folder = try Self.scratchFolder()
        defer { try? FileManager.default.removeItem(at: folder) }
        try await Self.createTopics(["audit.log": 4])
        let group = "tansu-sigkill-\(tag)"
        try await offThePool { try Self.startGroupAtEnd(group, topic: "audit.log", partitions: 4) }
        let url = Self.workerURL(group: group)
        let journals = [folder.appendingPathComponent("first.jsonl"), folder.appendingPathComponent("second.jsonl")]
        let first = try await Self.startWorker(url: url, journal: journals[0],
                                               log: folder.appendingPathComponent("first.log"))
        defer { first.kill() }

        let client = try await Self.makeClient(tag: tag)
        let emitting = Task {
            // Acknowledged emits, 64 in flight.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for n in 0..<total {
                    if n >= 64 { _ = try await group.next() }
                    group.addTask {
                        try await client.emit(ExampleService.auditLog, ["run": .string(tag), "n": .integer(Int64(n))])
                    }
                }
                try await group.waitForAll()
            }
        }
        defer { emitting.cancel() }

        // Kill the worker once it has handled some of the run, but (by far) not all.
        let atKill = try await offThePool { () throws -> Int in
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                let handled = try Journal.read(journals[0], tag: tag).lines
                if handled >= 1_000 {
                    first.kill()
                    return handled
                }
                usleep(5_000)
            }
            return -1
        }
        try #require(atKill > 0, "the first worker handled fewer than 1,000 events in 60 s: \(first.logTail)")
        _ = try await offThePool { first.waitForExit(timeout: 10) }
        let journaledAtKill = try await offThePool { try Journal.read(journals[0], tag: tag) }
        #expect(journaledAtKill.distinct < total, "the worker had handled every event before it was killed")

        let second = try await Self.startWorker(url: url, journal: journals[1],
                                                log: folder.appendingPathComponent("second.log"))
        defer { second.kill() }
        try await emitting.value
        let all = try await Self.waitForJournals(journals, tag: tag, count: total, timeout: 90)
        print("""
            tansu tier: SIGKILL: killed after \(journaledAtKill.lines) journal lines; \(all.distinct) of \(total) \
            events handled, \(all.duplicates) duplicates (at least once)
            """)
        let missing = Set(0..<total).subtracting(all.numbers)
        #expect(missing.count == 0, "never handled, e.g.: \(missing.sorted().prefix(20)); \(second.logTail)")
        if !missing.isEmpty { Self.keep(folder) }

        await client.shutdown()
        second.signal(SIGTERM)
        #expect(try await offThePool { second.waitForExit(timeout: 20) } == 0)
    }
}

// MARK: - Helpers

extension TansuTests {
    /// Runs `body`, failing with `what` if it takes longer than `limit` (see ``finish(within:_:_:)``).
    static func within(_ limit: Duration, _ what: String, _ body: @escaping @Sendable () async -> Void) async throws {
        try await finish(within: limit, what, body)
    }

    /// Keeps a failed test's logs and journals: moves its scratch folder to `courier-tansu-failed-…` (which the
    /// test's cleanup does not remove) and says where.
    static func keep(_ folder: URL) {
        let name = "courier-tansu-failed-" + folder.lastPathComponent.dropFirst("courier-tansu-".count)
        let kept = folder.deletingLastPathComponent().appendingPathComponent(name)
        try? FileManager.default.moveItem(at: folder, to: kept)
        print("tansu tier: kept the logs in \(kept.path)")
    }

    static func scratchFolder() throws -> URL {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("courier-tansu-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }

    /// Starts `courier example-worker` and waits (at most 45 s) for its `ready` line, printed once the group
    /// assigned it partitions.
    static func startWorker(url: String, journal: URL?, log: URL) async throws -> Child {
        var arguments = ["example-worker", "--transport", url, "--log-level", "warning"]
        if let journal { arguments += ["--journal", journal.path] }
        let worker = try Child(arguments, log: log)
        let line = try await offThePool { worker.firstLine(timeout: 45) }
        guard line.hasPrefix("ready kafka://") else {
            worker.kill()
            throw TimedOut(description: "example-worker not ready within 45 s (first line '\(line)'): \(worker.logTail)"
            )
        }
        return worker
    }

    /// Polls the journals until they hold `count` distinct events of run `tag` or `timeout` seconds passed.
    static func waitForJournals(_ journals: [URL], tag: String, count: Int, timeout: TimeInterval) async throws
        -> Journal
    {
        try await offThePool {
            let deadline = Date().addingTimeInterval(timeout)
            var merged = Journal()
            repeat {
                merged = Journal()
                for journal in journals { merged.merge(try Journal.read(journal, tag: tag)) }
                if merged.distinct >= count { break }
                usleep(50_000)
            } while Date() < deadline
            return merged
        }
    }

    /// The `audit.log` events of one run that example workers journaled (`--journal`).
    struct Journal: Sendable {
        /// Lines of this run.
        var lines = 0
        /// The distinct `n` seen.
        var numbers: Set<Int> = []

        var distinct: Int { numbers.count }
        var duplicates: Int { lines - numbers.count }

        mutating func merge(_ other: Journal) {
            lines += other.lines
            numbers.formUnion(other.numbers)
        }

        static func read(_ url: URL, tag: String) throws -> Journal {
            var journal = Journal()
            guard let data = FileManager.default.contents(atPath: url.path) else { return journal }
            for line in data.split(separator: UInt8(ascii: "\n")) {
                guard let value = try? JSONValue(parsing: String(decoding: line, as: UTF8.self)),
                      value["run"]?.stringValue == tag, let n = value["n"]?.intValue
                else { continue }
                journal.lines += 1
                journal.numbers.insert(Int(n))
            }
            return journal
        }
    }

    // MARK: Topics

    /// Creates topics with the given partition counts (``KafkaAdmin``); a topic that already exists is left as it
    /// is.
    static func createTopics(_ topics: [String: Int]) async throws {
        let admin = try KafkaAdmin(bootstrapServers: bootstrap!, logger: KafkaMockHarness.quietLogger)
        do {
            try await admin.createTopics(
                topics.map { KafkaTopicSpecification(name: $0.key, partitions: $0.value, replicationFactor: 1) },
                timeout: .seconds(15)
            )
        } catch {
            await admin.close()
            throw error
        }
        await admin.close()
    }

    /// Commits offsets for a new consumer group at the current end of every partition of `topic`, so its members
    /// skip what earlier tests and runs left there (the example worker's `audit.log` is shared, and a new group
    /// otherwise starts at the beginning). Blocking: use it through `offThePool`.
    static func startGroupAtEnd(_ group: String, topic: String, partitions: Int32) throws {
        let consumer = try makeRawConsumer(["bootstrap.servers": bootstrap!, "group.id": group,
                                            "enable.auto.commit": "false"])
        defer {
            rd_kafka_consumer_close(consumer)
            rd_kafka_destroy(consumer)
        }
        let list = rd_kafka_topic_partition_list_new(partitions)!
        defer { rd_kafka_topic_partition_list_destroy(list) }
        for partition in 0..<partitions {
            var low: Int64 = 0
            var high: Int64 = 0
            let err = rd_kafka_query_watermark_offsets(consumer, topic, partition, &low, &high, 10_000)
            guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                let reason = String(cString: rd_kafka_err2str(err))
                throw ReaderError(description: "watermarks of \(topic)[\(partition)]: \(reason)")
            }
            rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset = high
        }
        let err = rd_kafka_commit(consumer, list, 0)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let reason = String(cString: rd_kafka_err2str(err))
            throw ReaderError(description: "committing \(group) at the end of \(topic): \(reason)")
        }
    }

    /// The partition count of `topic` (nil if the broker does not know it).
    static func partitionCount(of topic: String) async throws -> Int? {
        let admin = try KafkaAdmin(bootstrapServers: bootstrap!, logger: KafkaMockHarness.quietLogger)
        do {
            let count = try await admin.partitionCount(of: topic)
            await admin.close()
            return count
        } catch {
            await admin.close()
            throw error
        }
    }
}

/// A `courier` process of the tansu tier. Its first stdout line is awaited with a deadline (poll(2)), its stderr
/// goes to a log file that failure messages quote. Stopped by its own PID only. Blocking methods: use them through
/// `offThePool`.
final class Child: @unchecked Sendable {
    // @unchecked: one test drives each child; `Process` is used from one thread at a time.
    let process = Process()
    let log: URL
    private let stdout = Pipe()
    private let buffered = Mutex<Data>(Data())

    init(_ arguments: [String], log: URL) throws {
        self.log = log
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = CourierProcess.executable
        process.arguments = arguments
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
        TestProcessLedger.record(process.processIdentifier)
    }

    /// Reads stdout until a newline, EOF or `timeout` seconds; returns the first line without its newline.
    func firstLine(timeout: TimeInterval) -> String {
        let deadline = Date().addingTimeInterval(timeout)
        let descriptor = stdout.fileHandleForReading.fileDescriptor
        while true {
            let data = buffered.withLock { $0 }
            if let newline = data.firstIndex(of: UInt8(ascii: "\n")) {
                return String(decoding: data[..<newline], as: UTF8.self)
            }
            let remaining = deadline.timeIntervalSinceNow
            guard remaining > 0 else { return String(decoding: data, as: UTF8.self) }
            var poller = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(min(remaining, 1) * 1000)) > 0 else { continue }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = read(descriptor, &chunk, chunk.count)
            if count <= 0 { return String(decoding: data, as: UTF8.self) }
            buffered.withLock { $0.append(contentsOf: chunk[..<count]) }
        }
    }

    /// Everything the process printed on stdout (call after it exited).
    func readStdout() -> String {
        let rest = stdout.fileHandleForReading.readDataToEndOfFile()
        return String(decoding: buffered.withLock { $0 } + rest, as: UTF8.self)
    }

    func signal(_ signal: Int32) {
        if process.isRunning { send(signal, to: process.processIdentifier) }
    }

    /// SIGKILL, if it still runs.
    func kill() { signal(SIGKILL) }

    /// Waits up to `timeout` seconds for the process to exit; SIGKILLs it after that. Returns the exit status, or
    /// nil if it had to be killed (or died of a signal).
    func waitForExit(timeout: TimeInterval) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        let timedOut = process.isRunning
        if timedOut { kill() }
        process.waitUntilExit()
        guard !timedOut, process.terminationReason == .exit else { return nil }
        return process.terminationStatus
    }

    /// The last lines of the process's stderr, for failure messages.
    var logTail: String {
        let text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
        let lines = text.split(separator: "\n").suffix(8).joined(separator: " | ")
        return "[\(process.arguments?.first ?? "") log: \(lines)]"
    }

    deinit { kill() }
}

/// `kill(2)`, outside `Child` (whose `kill()` would shadow it).
private func send(_ signal: Int32, to pid: pid_t) {
    kill(pid, signal)
}
