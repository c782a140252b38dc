//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// A request or an event as it crosses a transport, independent of the wire format.
///
/// The payload is the raw JSON text of the NestJS `data` field: codecs never decode it, so a worker only pays for
/// decoding once, into the handler's own type.
public struct WireRequest: Sendable {
    /// The pattern name (the NestJS route string).
    public var pattern: String
    /// The raw JSON text of the payload (`null` when there is none).
    public var payload: ByteBuffer
    /// The correlation id of a request; `nil` for an event.
    public var correlationID: String?
    /// String metadata travelling with the message (NestJS `metadata`; Kafka headers).
    public var headers: [String: String]
    /// How long the caller will wait for the final reply, so a handler knows its deadline.
    public var timeout: Duration?

    /// Whether this is an event (no reply is ever sent).
    public var isEvent: Bool { correlationID == nil }

    /// A request (with a correlation id) or an event (without).
    public init(
        pattern: String,
        payload: ByteBuffer,
        correlationID: String?,
        headers: [String: String] = [:],
        timeout: Duration? = nil
    ) {
        self.pattern = pattern
        self.payload = payload
        self.correlationID = correlationID
        self.headers = headers
        self.timeout = timeout
    }
}

/// One reply packet for a request, in NestJS's model: a value, an error, an end-of-stream marker, or a Courier
/// deadline extension.
///
/// The rules a caller applies (NestJS `createObserver`): an ``error`` ends the call; otherwise a packet with
/// ``isDisposed`` delivers its ``response`` (if any) and then ends the call; otherwise the ``response`` is one
/// more value. A packet with only ``extendDeadline`` carries no value.
public struct WireReply: Sendable {
    /// The correlation id of the request this answers.
    public var correlationID: String
    /// The raw JSON text of a value, or `nil` when the packet carries none.
    public var response: ByteBuffer?
    /// The NestJS `err` value: an error, which ends the call.
    public var error: JSONValue?
    /// The NestJS `isDisposed` flag: the end of the reply stream.
    public var isDisposed: Bool
    /// The NestJS `status` field (`"error"` on the unknown-pattern reply).
    public var status: String?
    /// A Courier extension: the handler asks the caller to wait this much longer, counted from now.
    public var extendDeadline: Duration?

    /// A reply packet; set only the fields the packet carries.
    public init(
        correlationID: String,
        response: ByteBuffer? = nil,
        error: JSONValue? = nil,
        isDisposed: Bool = false,
        status: String? = nil,
        extendDeadline: Duration? = nil
    ) {
        self.correlationID = correlationID
        self.response = response
        self.error = error
        self.isDisposed = isDisposed
        self.status = status
        self.extendDeadline = extendDeadline
    }

    /// Whether the caller stops listening after this packet.
    public var isTerminal: Bool { error != nil || isDisposed }

    /// NestJS's exact text for a request no handler matched.
    public static let noHandlerMessage = "There is no matching message handler defined in the remote service."

    /// The reply NestJS sends when no handler matches: `{"id":…,"status":"error","err":"There is no matching…"}`.
    public static func noHandler(correlationID: String) -> WireReply {
        WireReply(correlationID: correlationID, error: .string(noHandlerMessage), status: "error")
    }

    /// The error reply for a thrown error: a ``CourierError`` keeps its code, message and details; anything else
    /// becomes NestJS's generic `{"status":"error","message":"Internal server error"}`.
    public static func failure(correlationID: String, error: any Error) -> WireReply {
        WireReply(correlationID: correlationID, error: errorValue(for: error), isDisposed: true)
    }

    /// The JSON `err` value Courier sends for a thrown error.
    public static func errorValue(for error: any Error) -> JSONValue {
        guard let courier = error as? CourierError else {
            return ["status": "error", "message": "Internal server error"]
        }
        var object: [String: JSONValue] = [
            "status": "error",
            "message": .string(courier.message),
            "code": .integer(Int64(courier.code.rawValue)),
        ]
        if let details = courier.details { object["details"] = details }
        return .object(object)
    }

    /// Turns a received `err` value into the error the caller throws.
    ///
    /// An object with an integer `code` becomes a ``CourierError`` with that code, `message` and `details`;
    /// NestJS's unknown-pattern text becomes ``CourierError/Code/noHandler``; anything else becomes
    /// ``CourierError/Code/remote`` with the best message that can be found.
    public static func callerError(from err: JSONValue) -> CourierError {
        var error: CourierError
        switch err {
        case .string(let text) where text == noHandlerMessage:
            error = CourierError(.noHandler, text)
        case .string(let text):
            error = CourierError(.remote, text)
        case .object(let object):
            let message = object["message"]?.stringValue ?? err.description
            if let code = object["code"]?.intValue, let small = Int(exactly: code) {
                error = CourierError(.init(small), message, details: object["details"])
            } else {
                error = CourierError(.remote, message, details: err)
            }
        default:
            error = CourierError(.remote, err.description, details: err)
        }
        error.isRemote = true
        return error
    }
}

/// A decoded frame from a wire codec.
public enum WirePacket: Sendable {
    /// A request or an event, as a worker receives it.
    case request(WireRequest)
    /// A reply, as a caller receives it.
    case reply(WireReply)
}
