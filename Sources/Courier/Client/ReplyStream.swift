//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// The replies to a streaming call, in the order the handler sent them.
///
/// The sequence ends when the handler finishes (the end-of-stream marker), throws a ``CourierError`` when the
/// handler fails, the deadline passes or the connection drops, and forgets the call when you stop iterating
/// (break, or cancellation of the iterating task). Iterate it once.
public struct ReplyStream<Element: Decodable & Sendable>: AsyncSequence, Sendable {
    public typealias Failure = any Error

    let raw: AsyncThrowingStream<ByteBuffer, any Error>
    let coder: PayloadCoder

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<ByteBuffer, any Error>.AsyncIterator
        let coder: PayloadCoder

        public mutating func next(isolation actor: isolated (any Actor)?) async throws -> Element? {
            guard let buffer = try await base.next(isolation: actor) else { return nil }
            return try coder.decode(Element.self, from: buffer)
        }

        public mutating func next() async throws -> Element? {
            try await next(isolation: #isolation)
        }
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: raw.makeAsyncIterator(), coder: coder)
    }

    /// Collects every element until the stream ends.
    public func collect() async throws -> [Element] {
        var elements: [Element] = []
        for try await element in self { elements.append(element) }
        return elements
    }
}
