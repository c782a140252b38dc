//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import Logging

/// Forwards librdkafka's log and error events to swift-log.
enum RDKafkaLog {
    /// Maps a syslog level (librdkafka's 0 = emergency ... 7 = debug) onto swift-log.
    static func level(syslog: Int32) -> Logger.Level {
        switch syslog {
        case ...2: .critical
        case 3: .error
        case 4: .warning
        case 5: .notice
        case 6: .info
        default: .debug
        }
    }

    /// Logs an `RD_KAFKA_EVENT_LOG` event.
    static func logEvent(_ event: OpaquePointer, to logger: Logger) {
        var facility: UnsafePointer<CChar>?
        var text: UnsafePointer<CChar>?
        var syslogLevel: Int32 = 6
        guard rd_kafka_event_log(event, &facility, &text, &syslogLevel) == 0 else { return }
        let message = text.map { String(cString: $0) } ?? ""
        let facilityName = facility.map { String(cString: $0) } ?? ""
        var level = level(syslog: syslogLevel)
        if facilityName == "AUTOCREATE", level > .info {
            // "allow.auto.create.topics=false not supported by broker": said on every connection to brokers older
            // than 0.11, the embedded mock cluster included, where it changes nothing Courier relies on.
            level = .info
        }
        logger.log(level: level, "\(message)", metadata: ["rdkafka.facility": "\(facilityName)"])
    }

    /// Logs an `RD_KAFKA_EVENT_ERROR` event: librdkafka retries most errors itself, so non-fatal ones are warnings.
    static func errorEvent(_ event: OpaquePointer, to logger: Logger) {
        let err = rd_kafka_event_error(event)
        let fatal = rd_kafka_event_error_is_fatal(event) != 0
        let text = rd_kafka_event_error_string(event).map { String(cString: $0) } ?? ""
        logger.log(
            level: fatal ? .critical : .warning,
            "librdkafka error: \(text)",
            metadata: [
                "rdkafka.error": "\(String(cString: rd_kafka_err2str(err)))",
                "rdkafka.code": "\(err.rawValue)",
                "rdkafka.fatal": "\(fatal)",
            ]
        )
    }
}
