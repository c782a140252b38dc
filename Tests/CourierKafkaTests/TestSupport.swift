//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierTestSupport
import CourierTesting
import Foundation
import Synchronization
import Testing

/// The NUL-terminated text in a C error buffer.
func text(of buffer: [CChar]) -> String {
    buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// A message as read back from the cluster.
struct ReadMessage: Sendable, Hashable {
    var partition: Int32
    var offset: Int64
    var key: [UInt8]?
    var value: [UInt8]?
    var headers: [Header]

    struct Header: Sendable, Hashable {
        var name: String
        var value: [UInt8]?
    }
}

struct ReaderError: Error, CustomStringConvertible {
    var description: String
}


/// A raw librdkafka consumer with `settings` (and `log_level=3`), independent of Courier's bridge, so tests can
/// check the bridge against librdkafka itself. The caller closes and destroys it.
func makeRawConsumer(_ settings: [String: String]) throws -> OpaquePointer {
    guard let conf = rd_kafka_conf_new() else { throw ReaderError(description: "rd_kafka_conf_new") }
    for (key, value) in settings.merging(["log_level": "3"], uniquingKeysWith: { current, _ in current }) {
        var errors = [CChar](repeating: 0, count: 512)
        guard rd_kafka_conf_set(conf, key, value, &errors, errors.count) == RD_KAFKA_CONF_OK else {
            rd_kafka_conf_destroy(conf)
            throw ReaderError(description: "conf \(key): \(text(of: errors))")
        }
    }
    var errors = [CChar](repeating: 0, count: 512)
    guard let consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, &errors, errors.count) else {
        rd_kafka_conf_destroy(conf)
        throw ReaderError(description: "rd_kafka_new: \(text(of: errors))")
    }
    return consumer
}
/// A minimal test-only reader: assigns every partition of a topic from the beginning (no consumer group) and
/// polls on the calling thread until `count` messages arrived or `timeout` passed. Call it through `offThePool`.
func readBlocking(
    bootstrapServers: String,
    topic: String,
    partitions: Int32,
    count: Int,
    timeout: TimeInterval = 15
) throws -> [ReadMessage] {
    let consumer = try makeRawConsumer([
        "bootstrap.servers": bootstrapServers, "fetch.wait.max.ms": "10", "enable.auto.commit": "false",
        "group.id": "courier-test-reader",
    ])
    defer {
        rd_kafka_consumer_close(consumer)
        rd_kafka_destroy(consumer)
    }
    rd_kafka_poll_set_consumer(consumer)
    let list = rd_kafka_topic_partition_list_new(partitions)!
    defer { rd_kafka_topic_partition_list_destroy(list) }
    for partition in 0..<partitions {
        // -2 is RD_KAFKA_OFFSET_BEGINNING.
        rd_kafka_topic_partition_list_add(list, topic, partition).pointee.offset = -2
    }
    let err = rd_kafka_assign(consumer, list)
    guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
        throw ReaderError(description: "rd_kafka_assign: \(String(cString: rd_kafka_err2str(err)))")
    }
    var messages: [ReadMessage] = []
    let deadline = Date().addingTimeInterval(timeout)
    while messages.count < count, Date() < deadline {
        guard let message = rd_kafka_consumer_poll(consumer, 100) else { continue }
        defer { rd_kafka_message_destroy(message) }
        guard message.pointee.err == RD_KAFKA_RESP_ERR_NO_ERROR else { continue }
        func bytes(_ pointer: UnsafeMutableRawPointer?, _ length: Int) -> [UInt8]? {
            guard let pointer else { return nil }
            return Array(UnsafeRawBufferPointer(start: pointer, count: length))
        }
        var headers: [ReadMessage.Header] = []
        var list: OpaquePointer?
        if rd_kafka_message_headers(message, &list) == RD_KAFKA_RESP_ERR_NO_ERROR, let list {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(list, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(
                    .init(
                        name: String(cString: name!),
                        value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                    )
                )
                index += 1
            }
        }
        messages.append(
            ReadMessage(
                partition: message.pointee.partition,
                offset: message.pointee.offset,
                key: bytes(message.pointee.key, message.pointee.key_len),
                value: bytes(message.pointee.payload, message.pointee.len),
                headers: headers
            )
        )
    }
    return messages
}

/// A running `courier` command (`dev-broker`, `example-worker`, …) started as its own process; it reads the first
/// line the command prints (`ready …`).
final class CourierProcess: @unchecked Sendable {
    // @unchecked: the process is only touched from one test at a time.
    let process = Process()
    /// The first line printed on stdout, with its newline; empty if the command exited first.
    let readyLine: String

    /// The `courier` binary next to the test bundle in the build folder.
    static var executable: URL {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("courier")
    }

    /// Starts `courier <arguments>` and waits for its first line. Blocking: call it through `offThePool`.
    init(arguments: [String]) throws {
        process.executableURL = Self.executable
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        TestProcessLedger.record(process.processIdentifier)
        var line = Data()
        let handle = out.fileHandleForReading
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = handle.availableData
            if chunk.isEmpty { break }
            line.append(chunk)
        }
        readyLine = String(decoding: line, as: UTF8.self)
    }

    /// The URL after `ready ` on the first line, without the newline.
    var readyURL: String {
        String(readyLine.dropFirst("ready ".count).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Sends SIGTERM and returns the exit status (waiting at most 10 s). Blocking: call it through `offThePool`.
    func stop() throws -> Int32 {
        if process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning, Date() < deadline { usleep(10_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("courier \(process.arguments ?? []) did not exit within 10 s of SIGTERM")
        }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}
