//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The processes Courier's own tests start (redis-servers, `courier` commands, brokers): their PIDs are appended to
/// the file that `COURIER_TEST_PID_FILE` names, so that `scripts/test` can stop, by PID, any that a crashed test run
/// left behind. A test stops its processes itself; this is for when the test process dies first.
package enum TestProcessLedger {
    /// Records `pid` if `COURIER_TEST_PID_FILE` is set; does nothing otherwise.
    package static func record(_ pid: Int32) {
        guard let path = getenv("COURIER_TEST_PID_FILE").map({ String(cString: $0) }), !path.isEmpty else { return }
        let descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT, 0o644)
        guard descriptor >= 0 else { return }
        defer { close(descriptor) }
        // One short write with O_APPEND: lines from parallel tests do not interleave.
        let line = Array("\(pid)\n".utf8)
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
    }
}
