//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import NIOCore

/// Runs Swift tasks on a NIO event loop, so a connection's reads, its handlers and its writes share one thread
/// and hand work to each other without cross-thread wake-ups.
package final class EventLoopTaskExecutor: TaskExecutor, @unchecked Sendable {
    // @unchecked: the event loop is thread-safe; the class holds nothing else.
    package let eventLoop: any EventLoop

    package init(_ eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
