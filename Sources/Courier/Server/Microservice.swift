//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Logging
import ServiceLifecycle
import Synchronization

/// A worker: it serves a ``MessageRouter``'s handlers over a transport, as a `ServiceLifecycle` service.
///
/// ```swift
/// let worker = Microservice(router: router, transport: TCPServerTransport(host: "0.0.0.0", port: 3000))
/// let group = ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
///
/// On graceful shutdown it stops taking work (listeners close, messages that arrive are neither handled nor
/// acknowledged), lets in-flight handlers finish for up to
/// ``MicroserviceConfiguration/gracefulShutdownTimeout``, cancels those still running, closes the transport and
/// returns. Cancelling the task that runs it stops it at once.
public final class Microservice: Service, Sendable {
    private let router: MessageRouter
    private let transport: any ServerTransport
    private let configuration: MicroserviceConfiguration
    private let client: CourierClient?
    private let logger: Logger
    private let current = Mutex<HandlerDispatcher?>(nil)

    /// Creates a microservice.
    ///
    /// - Parameters:
    ///   - router: The handlers to serve.
    ///   - transport: Where messages come from.
    ///   - configuration: Concurrency and shutdown settings.
    ///   - client: A client handlers can reach through ``MessageContext/client`` for onward calls.
    ///   - logger: The logger for worker events (failed handlers, rejected input, lifecycle).
    public init(
        router: MessageRouter,
        transport: any ServerTransport,
        configuration: MicroserviceConfiguration = .init(),
        client: CourierClient? = nil,
        logger: Logger = Logger(label: "courier.microservice")
    ) {
        self.router = router
        self.transport = transport
        self.configuration = configuration
        self.client = client
        self.logger = logger
    }

    /// The number of handlers running now.
    public var inFlightHandlers: Int { current.withLock { $0?.inFlight ?? 0 } }

    /// Whether a graceful shutdown has begun: the service takes no new work.
    public var isDraining: Bool { current.withLock { $0?.isDraining ?? false } }

    /// The number of event handlers that threw since the service started (their errors are logged only).
    public var failedEvents: Int { current.withLock { $0?.failedEvents ?? 0 } }

    /// The transport's native server object (for TCP, the listening NIO `Channel`), once it serves.
    public func unwrap<Native>(as type: Native.Type = Native.self) async throws -> Native {
        let native = try await transport.nativeServer()
        guard let typed = native as? Native else {
            throw CourierError(.unprocessable, "the \(transport.name) server is a \(Swift.type(of: native)), not \(Native.self)")
        }
        return typed
    }

    /// Serves until graceful shutdown or cancellation.
    ///
    /// - Throws: A registration problem from ``MessageRouter/validate()``, a
    ///   ``MicroserviceConfiguration/maxConcurrentHandlers`` below 1, or the transport's failure to start.
    public func run() async throws {
        try router.validate()
        // The initializer checks it, but the property can be set afterwards: with no handler slot the worker would
        // serve and never handle a message.
        guard configuration.maxConcurrentHandlers > 0 else {
            throw CourierError(.unprocessable,
                               "maxConcurrentHandlers must be positive, got \(configuration.maxConcurrentHandlers)")
        }
        let dispatcher = HandlerDispatcher(
            router: router,
            configuration: configuration,
            client: client,
            logger: logger
        )
        current.withLock { $0 = dispatcher }
        let patterns = router.patterns
        logger.info(
            "serving",
            metadata: ["transport": "\(transport.name)", "patterns": "\(patterns.map(\.text).joined(separator: " "))"]
        )
        let transport = self.transport
        let timeout = configuration.gracefulShutdownTimeout
        let logger = self.logger
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await transport.serve(patterns: patterns, dispatcher: dispatcher)
            }
            group.addTask {
                do {
                    try await gracefulShutdown()
                } catch {
                    return  // cancelled: the group is going down anyway
                }
                logger.info("draining", metadata: ["in-flight": "\(dispatcher.inFlight)"])
                dispatcher.beginDraining(timeout: timeout)
                if await dispatcher.waitUntilIdle(timeout: timeout) {
                    logger.info("drained")
                } else {
                    logger.warning(
                        "graceful shutdown timed out; cancelling handlers",
                        metadata: ["in-flight": "\(dispatcher.inFlight)", "timeout": "\(timeout)"]
                    )
                }
            }
            do {
                try await group.next()
            } catch is CancellationError {
                // Cancelled from outside: stop everything below.
            }
            group.cancelAll()
            while let _ = try? await group.next() {}
        }
        logger.info("stopped")
    }
}
