//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// How a ``Microservice`` runs its handlers and shuts down.
public struct MicroserviceConfiguration: Sendable {
    /// The most handlers that run at once, across all patterns and connections. When all slots are busy, the
    /// transport stops reading (backpressure) until one frees up.
    ///
    /// Default: `1024`
    public var maxConcurrentHandlers: Int

    /// How long a graceful shutdown waits for in-flight handlers to finish before cancelling them.
    ///
    /// Default: `.seconds(30)`
    public var gracefulShutdownTimeout: Duration

    /// Creates a configuration; every parameter has the documented default.
    public init(maxConcurrentHandlers: Int = 1024, gracefulShutdownTimeout: Duration = .seconds(30)) {
        precondition(maxConcurrentHandlers > 0, "maxConcurrentHandlers must be positive")
        self.maxConcurrentHandlers = maxConcurrentHandlers
        self.gracefulShutdownTimeout = gracefulShutdownTimeout
    }
}
