//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// How a ``CourierClient`` calls services.
public struct ClientConfiguration: Sendable {
    /// How long `send` and `sendStream` wait for the final reply when the call names no timeout. A handler may
    /// extend a call's deadline (``MessageContext/extendDeadline(by:)``).
    ///
    /// Default: `.seconds(30)`
    public var defaultTimeout: Duration

    /// Headers sent with every request and event, under those the call gives.
    ///
    /// Default: `[:]`
    public var defaultHeaders: [String: String]

    /// Creates a configuration; every parameter has the documented default.
    public init(defaultTimeout: Duration = .seconds(30), defaultHeaders: [String: String] = [:]) {
        self.defaultTimeout = defaultTimeout
        self.defaultHeaders = defaultHeaders
    }
}
