//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CRdKafka
import CourierCore
import Testing

@testable import CourierKafka

@Suite struct RDKafkaConfigTests {
    @Test func unknownPropertyIsAnUnprocessableErrorNamingIt() throws {
        let error = #expect(throws: CourierError.self) {
            _ = try KafkaProducer(bootstrapServers: "127.0.0.1:1", properties: ["no.such.property": "1"])
        }
        #expect(error?.code == .unprocessable)
        #expect(error?.message.contains("'no.such.property'") == true, "\(String(describing: error))")
        #expect(error?.message.contains("unknown") == true, "\(String(describing: error))")
    }

    @Test func invalidValueNamesThePropertyAndValue() throws {
        let error = #expect(throws: CourierError.self) {
            _ = try RDKafkaConfig.make(["linger.ms": "soon"])
        }
        #expect(error?.code == .unprocessable)
        #expect(error?.message.contains("'linger.ms'") == true, "\(String(describing: error))")
        #expect(error?.message.contains("'soon'") == true, "\(String(describing: error))")
    }

    @Test func librdkafkaErrorsNameTheErrorAndKeepItsCode() {
        let error = RDKafkaConfig.error(.transportUnavailable, "producing", RD_KAFKA_RESP_ERR__QUEUE_FULL)
        #expect(error.code == .transportUnavailable)
        #expect(error.message.contains("-184"), "\(error.message)")
        #expect(error.message.contains("Queue full"), "\(error.message)")
    }
}
