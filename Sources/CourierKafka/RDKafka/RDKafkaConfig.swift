//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore

/// Builds librdkafka configuration objects from string properties and turns librdkafka errors into
/// ``CourierError``s.
enum RDKafkaConfig {
    /// The size librdkafka's documentation uses for error strings; messages longer than this are truncated.
    static let errorBufferSize = 512

    /// Calls `body` with a zeroed C error buffer and returns what it returned together with the buffer's text.
    static func withErrorBuffer<T>(_ body: (UnsafeMutablePointer<CChar>, Int) -> T) -> (T, String) {
        var buffer = [CChar](repeating: 0, count: errorBufferSize)
        let result = buffer.withUnsafeMutableBufferPointer { body($0.baseAddress!, $0.count) }
        let text = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return (result, text)
    }

    /// Creates an `rd_kafka_conf_t` with every property set, in key order so errors are deterministic.
    ///
    /// The caller owns the returned object: it passes it to `rd_kafka_new` (which takes it over only on success)
    /// or destroys it.
    ///
    /// - Throws: ``CourierError/Code/unprocessable`` naming the first property librdkafka rejects.
    static func make(_ properties: [String: String]) throws -> OpaquePointer {
        guard let conf = rd_kafka_conf_new() else {
            throw CourierError(.unprocessable, "librdkafka could not allocate a configuration object")
        }
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let (result, message) = withErrorBuffer { buffer, size in
                rd_kafka_conf_set(conf, key, value, buffer, size)
            }
            guard result == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                let kind = result == RD_KAFKA_CONF_UNKNOWN ? "unknown" : "invalid"
                // Errors end up in logs, so credentials are never echoed.
                let secret = ["password", "secret", "token"].contains { key.lowercased().contains($0) }
                let shown = secret ? "<redacted>" : "'\(value)'"
                throw CourierError(
                    .unprocessable,
                    "librdkafka rejected \(kind) configuration property '\(key)' (value \(shown)): \(message) "
                        + "(rd_kafka_conf_res_t \(result.rawValue))"
                )
            }
        }
        return conf
    }

    /// An error for a librdkafka error code, naming the operation, the code's text and its number.
    static func error(
        _ code: CourierError.Code,
        _ operation: String,
        _ err: rd_kafka_resp_err_t,
        detail: String? = nil
    ) -> CourierError {
        var text = "\(operation) failed: \(String(cString: rd_kafka_err2str(err))) (rd_kafka_resp_err_t \(err.rawValue)"
        if let name = rd_kafka_err2name(err) { text += " \(String(cString: name))" }
        text += ")"
        if let detail, !detail.isEmpty { text += ": \(detail)" }
        return CourierError(code, text)
    }
}
