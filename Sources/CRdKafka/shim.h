//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

// One umbrella header: rdkafka_mock.h stops with #error unless rdkafka.h was included first, so the two cannot be
// separate `header` lines in the module map.
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
