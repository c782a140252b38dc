//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore
import Synchronization

/// Collects writes that many tasks make to one channel and hands them to its event loop in batches, with one
/// flush per batch.
///
/// Writing from outside the event loop costs a cross-thread wake-up per write, and flushing each write costs a
/// system call; under load this dominates a small RPC. Here the first write of a batch schedules one event-loop
/// task, later writes join it until it runs, and the batch goes out in one flush (one `writev`). Order is kept.
package final class WriteCoalescer<Item: Sendable>: Sendable {
    private struct Pending {
        var items: [(Item, EventLoopPromise<Void>?)] = []
        var isScheduled = false
    }

    package let channel: any Channel
    private let pending = Mutex(Pending())
    private let onUnwritten: @Sendable ([Item]) -> Void
    private let writeOnLoop: (@Sendable (Item, EventLoopPromise<Void>?) -> Void)?

    /// - Parameters:
    ///   - channel: Where the writes go.
    ///   - onUnwritten: Called once per batch that found the channel already closed, with its items (their
    ///     promises, if any, fail too), so the caller can fail what waited on them.
    ///   - writeOnLoop: Writes one item on the event loop, in place of `channel.write` (which starts at the tail
    ///     of the pipeline and boxes an item that is not a buffer); the batch is still flushed through the
    ///     channel.
    package init(
        channel: any Channel,
        onUnwritten: @escaping @Sendable ([Item]) -> Void = { _ in },
        writeOnLoop: (@Sendable (Item, EventLoopPromise<Void>?) -> Void)? = nil
    ) {
        self.channel = channel
        self.onUnwritten = onUnwritten
        self.writeOnLoop = writeOnLoop
    }

    /// Queues `item`; `promise` (if any) completes when it is written.
    package func write(_ item: Item, promise: EventLoopPromise<Void>?) {
        enqueue { $0.append((item, promise)) }
    }

    /// Queues `items` in order, under one lock and with one hop to the event loop, without waiting for them.
    package func writeAll(_ items: [Item]) {
        enqueue { queued in
            queued.reserveCapacity(queued.count + items.count)
            for item in items { queued.append((item, nil)) }
        }
    }

    /// Queues `items` in order, under one lock and with one hop to the event loop, and waits until the last is
    /// written (the channel writes in order, so the others were written before it, or the channel failed first).
    package func writeAllAndWait(_ items: [Item]) async throws {
        guard let last = items.last else { return }
        let promise = channel.eventLoop.makePromise(of: Void.self)
        enqueue { queued in
            queued.reserveCapacity(queued.count + items.count)
            for item in items.dropLast() { queued.append((item, nil)) }
            queued.append((last, promise))
        }
        try await promise.futureResult.get()
    }

    /// Adds to the queue under its lock, and schedules a flush on the event loop unless one is scheduled already.
    private func enqueue(_ add: (inout [(Item, EventLoopPromise<Void>?)]) -> Void) {
        let schedule = pending.withLock { pending -> Bool in
            add(&pending.items)
            guard !pending.isScheduled else { return false }
            pending.isScheduled = true
            return true
        }
        if schedule {
            channel.eventLoop.execute { self.flushPending() }
        }
    }

    /// Queues `item` and waits until it is written.
    package func writeAndWait(_ item: Item) async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        write(item, promise: promise)
        try await promise.futureResult.get()
    }

    private func flushPending() {
        let batch = pending.withLock { pending in
            defer {
                pending.items.removeAll(keepingCapacity: true)
                pending.isScheduled = false
            }
            return pending.items
        }
        guard channel.isActive else {
            // Closing happens on this event loop too, so a channel found active here stays so for this batch.
            for (_, promise) in batch { promise?.fail(ChannelError.ioOnClosedChannel) }
            onUnwritten(batch.map(\.0))
            return
        }
        if let writeOnLoop {
            for (item, promise) in batch { writeOnLoop(item, promise) }
        } else {
            for (item, promise) in batch { channel.write(item, promise: promise) }
        }
        channel.flush()
    }
}
