//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

// CourierRedis uses only hiredis's RESP reader (read.h; `redisReaderCreate` is declared in hiredis.h in 0.14) and
// its binary-safe command encoder (`redisFormatSdsCommandArgv`). Never its blocking or async connection APIs: SwiftNIO
// owns the socket.
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
