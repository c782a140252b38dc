//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import NIOCore
import Synchronization

/// A transport inside one process, **for unit-testing your own handlers and callers only**.
///
/// Requests and replies still pass through the NestJS envelope encoder and decoder, so payloads, errors, stream
/// ends and deadline extensions behave as on a network transport; but nothing here tests a real transport, and
/// it has no persistence, no consumer groups and no network failures.
///
/// ```swift
/// let memory = InMemoryTransport()
/// let worker = Microservice(router: router, transport: memory.server)
/// let client = CourierClient(transport: memory.makeClient())
/// ```
public final class InMemoryTransport: Sendable {
    private struct State {
        var inbox: AsyncStream<InboundMessage>.Continuation?
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    /// A new, empty in-memory transport.
    public init() {}

    /// The worker side; serve it with one ``Microservice`` at a time.
    public var server: any ServerTransport { Server(hub: self) }

    /// A new client side connected to this transport.
    public func makeClient() -> any ClientTransport { Client(hub: self) }

    /// Returns once a microservice is serving on this transport.
    public func waitUntilServing() async {
        await withCheckedContinuation { continuation in
            let ready = state.withLock { state -> Bool in
                if state.inbox != nil { return true }
                state.waiters.append(continuation)
                return false
            }
            if ready { continuation.resume() }
        }
    }

    fileprivate func attach(_ inbox: AsyncStream<InboundMessage>.Continuation) {
        let waiters = state.withLock { state in
            state.inbox = inbox
            defer { state.waiters.removeAll() }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    fileprivate func detach() {
        state.withLock { $0.inbox = nil }
    }

    fileprivate func deliver(_ request: WireRequest, replies: (any ReplyReceiver)?) -> Bool {
        guard let inbox = state.withLock({ $0.inbox }) else { return false }
        let message = InboundMessage(
            request: Self.roundTrip(request),
            metadata: TransportMetadata(transport: "memory"),
            replyWriter: request.isEvent ? nil : replies.map(ReplyForwarder.init)
        )
        if case .terminated = inbox.yield(message) { return false }
        return true
    }

    static func roundTrip(_ request: WireRequest) -> WireRequest {
        var buffer = ByteBuffer()
        NestJSEnvelope.encode(request, into: &buffer)
        guard case .request(let decoded) = try? NestJSEnvelope.decode(buffer) else { return request }
        return decoded
    }

    private struct ReplyForwarder: ReplyWriter {
        let receiver: any ReplyReceiver
        init(_ receiver: any ReplyReceiver) { self.receiver = receiver }

        func write(_ reply: WireReply) async throws {
            var buffer = ByteBuffer()
            NestJSEnvelope.encode(reply, into: &buffer)
            guard case .reply(let decoded) = try NestJSEnvelope.decode(buffer) else { return }
            receiver.receive(decoded)
        }
    }

    private struct Server: ServerTransport {
        let hub: InMemoryTransport
        var name: String { "memory" }

        func serve(patterns: [RoutePattern], dispatcher: any InboundDispatcher) async throws {
            let (inbox, continuation) = AsyncStream<InboundMessage>.makeStream()
            hub.attach(continuation)
            defer {
                hub.detach()
                continuation.finish()
            }
            await withDiscardingTaskGroup { group in
                group.addTask {
                    await dispatcher.draining()
                    hub.detach()
                }
                for await message in inbox {
                    if Task.isCancelled { break }
                    await dispatcher.dispatch(message, in: &group)
                }
            }
        }

        func nativeServer() async throws -> any Sendable { hub }
    }

    private final class Client: ClientTransport {
        let hub: InMemoryTransport
        let receiver = Mutex<(any ReplyReceiver)?>(nil)
        var name: String { "memory" }

        init(hub: InMemoryTransport) { self.hub = hub }

        func connect(replies: any ReplyReceiver) async throws {
            receiver.withLock { $0 = replies }
        }

        var isConnected: Bool { receiver.withLock { $0 != nil } }

        func send(_ request: WireRequest) {
            let replies = receiver.withLock { $0 }
            if !hub.deliver(request, replies: replies), let id = request.correlationID {
                replies?.fail(correlationIDs: CollectionOfOne(id), with: .unavailable("no in-memory server is serving"))
            }
        }

        func emit(_ event: WireRequest) async throws {
            guard hub.deliver(event, replies: nil) else {
                throw CourierError.unavailable("no in-memory server is serving")
            }
        }

        func nativeClient(replies: any ReplyReceiver) async throws -> any Sendable { hub }

        func close() async {}
    }
}
