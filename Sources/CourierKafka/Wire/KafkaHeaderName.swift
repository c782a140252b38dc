//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// The record header names of the NestJS Kafka wire format, plus Courier's two extensions.
///
/// The `kafka_` names are Spring Kafka's `KafkaHeaders` names, which NestJS reuses with its own encodings (UTF-8
/// text where Spring uses raw bytes); see ``KafkaRecordCodec`` for both. Peers ignore headers they do not know, so
/// Courier's `courier-` headers are invisible to NestJS and Spring.
public enum KafkaHeaderName {
    /// The request's correlation id, echoed on every reply. NestJS: UTF-8 UUID text; Spring: 16 raw bytes.
    public static let correlationID = "kafka_correlationId"
    /// The topic the caller reads replies from (UTF-8), on requests only.
    public static let replyTopic = "kafka_replyTopic"
    /// The reply partition the caller owns, on requests only. NestJS: decimal text; Spring: 4-byte big-endian int.
    public static let replyPartition = "kafka_replyPartition"
    /// The error of an error reply: the error's text, or its JSON when it is an object or array.
    public static let nestError = "kafka_nest-err"
    /// The end of a reply stream; NestJS sends exactly one `0x00` byte, and only presence matters.
    public static let nestIsDisposed = "kafka_nest-is-disposed"
    /// Courier: the caller's timeout in milliseconds (decimal text), on requests, so a handler knows its deadline.
    public static let timeoutMilliseconds = "courier-timeout-ms"
    /// Courier: a deadline extension in milliseconds (decimal text), on a reply record with a null value.
    public static let extendMilliseconds = "courier-extend-ms"

    /// The prefix of Spring's and NestJS's protocol headers; such headers are never handed to handlers.
    public static let protocolPrefix = "kafka_"
    /// The prefix of Courier's protocol headers; such headers are never handed to handlers.
    public static let courierPrefix = "courier-"

    /// Whether a header belongs to the protocol (`kafka_…` or `courier-…`) rather than to the application.
    public static func isReserved(_ name: String) -> Bool {
        name.hasPrefix(protocolPrefix) || name.hasPrefix(courierPrefix)
    }
}
