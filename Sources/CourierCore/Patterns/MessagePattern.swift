//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A request/reply contract: a pattern name, the request type and the single reply type.
///
/// Declare it once, in a module both the worker and the caller import, and the compiler checks both sides:
///
/// ```swift
/// enum Math {
///     static let sum = MessagePattern<[Int], Int>("math.sum")
/// }
/// let total = try await client.send(Math.sum, [1, 2, 3])
/// ```
public struct MessagePattern<Request: Codable & Sendable, Response: Codable & Sendable>: Sendable, Hashable {
    /// The pattern name on the wire (the NestJS pattern string, Kafka topic or Redis channel).
    public let name: String

    /// Creates a request/reply contract.
    ///
    /// - Parameter name: The pattern name; a handler may register it exactly or through a wildcard route.
    public init(_ name: String) { self.name = name }
}

/// A fire-and-forget contract: a pattern name and its payload type. Handlers never reply to events.
public struct EventPattern<Payload: Codable & Sendable>: Sendable, Hashable {
    /// The pattern name on the wire.
    public let name: String

    /// Creates an event contract.
    public init(_ name: String) { self.name = name }
}

/// A request/stream-of-replies contract: a pattern name, the request type and the type of each streamed element.
///
/// The caller iterates the replies with ``CourierClient/sendStream(_:_:timeout:headers:)``; the stream ends when the
/// handler finishes (the NestJS `isDisposed` marker).
public struct StreamPattern<Request: Codable & Sendable, Element: Codable & Sendable>: Sendable, Hashable {
    /// The pattern name on the wire.
    public let name: String

    /// Creates a streaming contract.
    public init(_ name: String) { self.name = name }
}

/// A payload type for patterns that carry no data. It encodes as JSON `null` and decodes from anything.
public struct NoPayload: Codable, Sendable, Hashable {
    /// The empty payload.
    public init() {}
    public init(from decoder: any Decoder) throws {}
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encodeNil()
    }
}
