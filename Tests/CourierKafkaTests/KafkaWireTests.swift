//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import CourierKafka
import CourierTestSupport
import CourierTesting
import Foundation
import NIOCore
import Testing

/// The pure NestJS-over-Kafka wire rules: topic names, value encoding, reply partitions and record mapping
/// (wire notes §4, §7, §8.3).
@Suite struct KafkaWireTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
    static func buffer(_ text: String) -> ByteBuffer { ByteBuffer(string: text) }
    static func text(_ buffer: ByteBuffer?) -> String? { buffer.map { String(buffer: $0) } }

    /// Runs `body`, expecting a `CourierError` with `code` whose message contains every fragment.
    static func expectError(
        _ code: CourierError.Code,
        containing fragments: [String] = [],
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) {
        do {
            try body()
            Issue.record("expected an error", sourceLocation: sourceLocation)
        } catch let error as CourierError {
            #expect(error.code == code, sourceLocation: sourceLocation)
            for fragment in fragments {
                #expect(error.message.contains(fragment), "\(error.message)", sourceLocation: sourceLocation)
            }
        } catch {
            Issue.record("unexpected error \(error)", sourceLocation: sourceLocation)
        }
    }

    // MARK: - Topic names

    @Suite struct TopicNames {
        @Test(arguments: [
            "a", "math.sum", "A-Z_a-z.0-9", "...", "orders-v2", "-", "_", String(repeating: "a", count: 249),
        ])
        func legalNamesPass(_ name: String) throws {
            try KafkaTopicName.validate(name)
        }

        @Test func lengthLimitIs249() throws {
            try KafkaTopicName.validate(String(repeating: "x", count: 249))
            KafkaWireTests.expectError(.unprocessable, containing: ["250 characters", "249"]) {
                try KafkaTopicName.validate(String(repeating: "x", count: 250))
            }
        }

        @Test func emptyIsRejected() {
            KafkaWireTests.expectError(.unprocessable, containing: ["''", "empty"]) {
                try KafkaTopicName.validate("")
            }
        }

        @Test(arguments: [".", ".."])
        func dotAndDotDotAreReserved(_ name: String) {
            KafkaWireTests.expectError(.unprocessable, containing: ["'\(name)'", "reserves"]) {
                try KafkaTopicName.validate(name)
            }
        }

        @Test(arguments: [
            ("a:b", "':'"),
            ("orders/created", "'/'"),
            ("math sum", "U+0020 (space)"),
            ("{\"cmd\":\"sum\"}", "'{'"),
            ("caf\u{E9}", "U+00E9"),
            ("a*b", "'*'"),
            ("tab\there", "U+0009"),
            ("_rpc:response", "':'"),
        ])
        func illegalCharactersAreNamedAndTheNameQuoted(_ name: String, _ character: String) {
            KafkaWireTests.expectError(.unprocessable, containing: ["'\(name)'", "character \(character)"]) {
                try KafkaTopicName.validate(name)
            }
        }

        @Test func theReplyTopicMustFitTooWhenOneIsDerived() throws {
            #expect(KafkaTopicName.maximumLengthWithReplyTopic == 243)
            let longest = String(repeating: "p", count: 243)
            try KafkaTopicName.validate(longest, derivingReplyTopic: true)
            let reply = try KafkaTopicName.replyTopic(for: longest)
            #expect(reply.utf8.count == 249)
            try KafkaTopicName.validate(reply)

            let tooLong = String(repeating: "p", count: 244)
            try KafkaTopicName.validate(tooLong)  // fine as a plain topic
            KafkaWireTests.expectError(.unprocessable, containing: ["244 characters", ".reply", "243"]) {
                try KafkaTopicName.validate(tooLong, derivingReplyTopic: true)
            }
            KafkaWireTests.expectError(.unprocessable, containing: ["reply"]) {
                _ = try KafkaTopicName.replyTopic(for: tooLong)
            }
        }

        @Test func replyTopicAppendsDotReply() throws {
            #expect(try KafkaTopicName.replyTopic(for: "math.sum") == "math.sum.reply")
            KafkaWireTests.expectError(.unprocessable, containing: ["'{\"cmd\":\"sum\"}'"]) {
                _ = try KafkaTopicName.replyTopic(for: "{\"cmd\":\"sum\"}")
            }
        }

        @Test(arguments: [
            ("math.sum", [KafkaTopicName.Warning]()),
            ("math_sum", []),
            ("__consumer_offsets", [.internalPrefix]),
            ("_single", []),
            ("a.b_c", [.mixesDotAndUnderscore]),
            ("__a.b_c", [.internalPrefix, .mixesDotAndUnderscore]),
        ])
        func warnings(_ name: String, _ expected: [KafkaTopicName.Warning]) throws {
            #expect(try KafkaTopicName.validate(name) == expected)
            #expect(KafkaTopicName.warnings(for: name) == expected)
        }

        @Test func warningsDescribeThemselves() {
            #expect(KafkaTopicName.Warning.internalPrefix.description.contains("'__'"))
            #expect(KafkaTopicName.Warning.mixesDotAndUnderscore.description.contains("collide"))
        }
    }

    // MARK: - Subscriptions

    @Suite struct Subscriptions {
        @Test(arguments: [
            ("math.sum", "math.sum"),
            ("orders.*", "^orders\\.[^.]+$"),
            ("orders.*.created", "^orders\\.[^.]+\\.created$"),
            ("audit.**", "^audit\\..+$"),
            ("*", "^[^.]+$"),
            ("**", "^.+$"),
            ("*.*", "^[^.]+\\.[^.]+$"),
            ("a-b_c.*.**", "^a-b_c\\.[^.]+\\..+$"),
        ])
        func subscriptionText(_ route: String, _ expected: String) throws {
            #expect(try KafkaTopicName.subscription(for: RoutePattern(route)) == expected)
        }

        static let sampleTopics = [
            "orders", "orders.42", "orders.42.created", "orders.4.2.created", "orders.created", "orders.reply",
            "ordersX42", "xorders.42", "audit", "audit.log", "audit.user.login", "auditlog", "math.sum",
            "math.sum.reply", "a-b_c.1.2", "a-b_c.1", "a-b_c.1.2.3",
        ]

        /// The regex a consumer subscribes with matches exactly the topics the route matches.
        @Test(arguments: ["orders.*", "orders.*.created", "audit.**", "*", "**", "*.*", "a-b_c.*.**"])
        func regexAgreesWithRouteMatching(_ text: String) throws {
            let route = try RoutePattern(text)
            let subscription = try KafkaTopicName.subscription(for: route)
            #expect(subscription.hasPrefix("^") && subscription.hasSuffix("$"))
            let regex = try NSRegularExpression(pattern: subscription)
            for topic in Self.sampleTopics {
                let range = NSRange(topic.startIndex..., in: topic)
                let matched = regex.firstMatch(in: topic, range: range) != nil
                #expect(matched == route.matches(topic), "\(subscription) vs \(topic)")
                #expect(try Self.posixMatches(subscription, topic) == route.matches(topic), "POSIX \(subscription)")
            }
        }

        /// librdkafka compiles subscriptions with POSIX `regcomp(REG_EXTENDED)`, whose dialect is not ICU's, so the
        /// expressions are checked with it too.
        static func posixMatches(_ pattern: String, _ text: String) throws -> Bool {
            var regex = regex_t()
            let status = regcomp(&regex, pattern, REG_EXTENDED | REG_NOSUB)
            try #require(status == 0, "regcomp failed for \(pattern)")
            defer { regfree(&regex) }
            return regexec(&regex, text, 0, nil, 0) == 0
        }

        @Test(arguments: [
            ("orders.*", "orders.42", true),
            ("orders.*", "orders.4.2", false),
            ("orders.*", "ordersX42", false),
            ("orders.*.created", "orders.42.created", true),
            ("orders.*.created", "orders.created", false),
            ("audit.**", "audit.user.login", true),
            ("audit.**", "audit", false),
            ("audit.**", "auditXlog", false),
        ])
        func sampleMatches(_ route: String, _ topic: String, _ expected: Bool) throws {
            let regex = try NSRegularExpression(pattern: KafkaTopicName.subscription(for: RoutePattern(route)))
            let matched = regex.firstMatch(in: topic, range: NSRange(topic.startIndex..., in: topic)) != nil
            #expect(matched == expected)
        }

        @Test(arguments: [
            ("a*b.*", "'*'"),
            ("a:b.*", "':'"),
            ("orders.{id}.*", "'{'"),
            ("a b.**", "U+0020"),
            ("math:sum", "':'"),
            ("{\"cmd\":\"sum\"}", "'{'"),
        ])
        func illegalLiteralSegmentsAreRejected(_ route: String, _ character: String) throws {
            let pattern = try RoutePattern(route)
            KafkaWireTests.expectError(.unprocessable, containing: ["'\(route)'", character]) {
                _ = try KafkaTopicName.subscription(for: pattern)
            }
        }

        @Test func tooLongRoutesAreRejected() throws {
            let exact = try RoutePattern(String(repeating: "e", count: 250))
            KafkaWireTests.expectError(.unprocessable, containing: ["250 characters"]) {
                _ = try KafkaTopicName.subscription(for: exact)
            }
            // 247 literal characters + ".*": the shortest match has 249 characters, which is fine.
            let fits = try RoutePattern(String(repeating: "w", count: 247) + ".*")
            _ = try KafkaTopicName.subscription(for: fits)
            // One more and no legal topic could ever match.
            let never = try RoutePattern(String(repeating: "w", count: 248) + ".*")
            KafkaWireTests.expectError(.unprocessable, containing: ["at least 250 characters"]) {
                _ = try KafkaTopicName.subscription(for: never)
            }
        }
    }

    // MARK: - Values

    @Suite struct Values {
        @Test(arguments: [
            ("{\"a\":1}", "{\"a\":1}"),
            ("[1,2,3]", "[1,2,3]"),
            ("{ \"a\" : [ true , null ] }", "{ \"a\" : [ true , null ] }"),
            ("\"hello\"", "hello"),
            ("\"he said \\\"hi\\\"\\n\"", "he said \"hi\"\n"),
            ("\"caf\\u00e9\"", "caf\u{E9}"),
            ("\"\"", ""),
            ("5", "5"),
            ("-1.5e3", "-1.5e3"),
            ("true", "true"),
            ("false", "false"),
            ("  {\"a\":1}\n", "{\"a\":1}"),
        ])
        func encode(_ payload: String, _ value: String) throws {
            #expect(try KafkaValueCodec.encode(KafkaWireTests.buffer(payload)) == KafkaWireTests.bytes(value))
            #expect(try KafkaValueCodec.encode(KafkaWireTests.bytes(payload)) == KafkaWireTests.bytes(value))
        }

        @Test(arguments: ["null", "", "  null  "])
        func nullAndEmptyEncodeAsNullValue(_ payload: String) throws {
            #expect(try KafkaValueCodec.encode(KafkaWireTests.buffer(payload)) == nil)
        }

        @Test(arguments: ["{", "hello", "1 2", "[1,]", "'x'", "\"unterminated"])
        func invalidPayloadsFailToEncode(_ payload: String) {
            KafkaWireTests.expectError(.encodingFailed, containing: ["one JSON value"]) {
                _ = try KafkaValueCodec.encode(KafkaWireTests.buffer(payload))
            }
        }

        @Test(arguments: [
            ("{\"a\":1}", "{\"a\":1}"),
            ("[1,2]", "[1,2]"),
            ("{\"a\":1}\n", "{\"a\":1}"),
            ("{not json", "\"{not json\""),
            ("[1,", "\"[1,\""),
            ("hello", "\"hello\""),
            ("5", "5"),
            ("-2.5", "-2.5"),
            ("true", "true"),
            ("false", "false"),
            ("null", "null"),
            ("\"hi\"", "\"hi\""),
            ("\"hi", "\"\\\"hi\""),
            (" 5", "\" 5\""),
            ("5 ", "\"5 \""),
            ("", "\"\""),
            ("he said \"hi\"", "\"he said \\\"hi\\\"\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("Infinity", "\"Infinity\""),
            ("007", "\"007\""),
        ])
        func decode(_ value: String, _ json: String) {
            #expect(String(buffer: KafkaValueCodec.decode(KafkaWireTests.bytes(value))) == json)
        }

        @Test func nilDecodesAsNull() {
            #expect(String(buffer: KafkaValueCodec.decode(nil)) == "null")
        }

        @Test func zeroPrefixedBytesBecomeALossyString() throws {
            #expect(String(buffer: KafkaValueCodec.decode([0x00, 0x01, 0x41])) == "\"\\u0000\\u0001A\"")
            // Invalid UTF-8 is replaced by U+FFFD: the binary cannot be recovered (documented).
            let lossy = KafkaValueCodec.decode([0x00, 0xFF, 0x7B])
            #expect(try JSONValue(parsing: String(buffer: lossy)) == .string("\u{0}\u{FFFD}{"))
            // A 0x00 first byte is binary even when the rest looks like JSON.
            #expect(try JSONValue(parsing: String(buffer: KafkaValueCodec.decode([0x00] + Array("5".utf8))))
                == .string("\u{0}5"))
        }

        @Test func invalidUTF8TextIsReplaced() throws {
            let decoded = KafkaValueCodec.decode([0x61, 0xFF, 0x62])
            #expect(try JSONValue(parsing: String(buffer: decoded)) == .string("a\u{FFFD}b"))
        }

        @Test func nestJSRawStringBecomesAJSONString() throws {
            // NestJS `send('greet', 'hello')` writes the 5 bytes `hello`.
            let payload = KafkaValueCodec.decode(Array("hello".utf8))
            #expect(try JSONValue(parsing: String(buffer: payload)) == .string("hello"))
        }

        /// Courier to Courier, every JSON kind comes back as it was sent.
        @Test(arguments: [
            "{\"a\":[1,2,{\"b\":null}]}", "[]", "{}", "[\"x\",1,true]", "42", "-0.5", "1e300", "true", "false", "null",
            "\"hello\"", "\"hello world\"", "\"caf\u{E9} \u{1F600}\"", "\"\"",
        ])
        func roundTrip(_ json: String) throws {
            let value = try KafkaValueCodec.encode(KafkaWireTests.buffer(json))
            let back = String(buffer: KafkaValueCodec.decode(value))
            #expect(try JSONValue(parsing: back) == JSONValue(parsing: json))
        }

        /// The documented ambiguity: a string whose text is JSON arrives as that JSON.
        @Test(arguments: [
            ("\"5\"", JSONValue.integer(5)),
            ("\"true\"", .bool(true)),
            ("\"null\"", .null),
            ("\"[1]\"", .array([1])),
            ("\"\\\"x\\\"\"", "x"),
        ])
        func stringsThatLookLikeJSONChangeType(_ json: String, _ arrives: JSONValue) throws {
            let value = try KafkaValueCodec.encode(KafkaWireTests.buffer(json))
            #expect(try JSONValue(parsing: String(buffer: KafkaValueCodec.decode(value))) == arrives)
        }
    }

    // MARK: - Reply partitions

    @Suite struct ReplyPartitions {
        static let parseCases: [([UInt8], Int32?)] = [
            (KafkaWireTests.bytes("0"), 0),
            (KafkaWireTests.bytes("12"), 12),
            ([0, 0, 0, 3], 3),
            ([0x30, 0x30, 0x30, 0x37], 7),  // "0007": four digits are text
            ([0, 0, 1, 0], 256),
            ([0x00, 0x30, 0x30, 0x31], 0x0030_3031),  // 0x00 first: Spring's integer even if the rest are digits
            ([0x41, 0x42, 0x43, 0x44], 0x4142_4344),  // non-digits: Spring's integer
            ([0x7F, 0xFF, 0xFF, 0xFF], Int32.max),
            (KafkaWireTests.bytes("2147483647"), Int32.max),
            (KafkaWireTests.bytes("00000000012"), 12),
        ]

        @Test(arguments: parseCases)
        func parse(_ bytes: [UInt8], _ expected: Int32?) {
            #expect(KafkaReplyPartition.parse(bytes) == expected)
        }

        @Test(arguments: [
            [UInt8](), KafkaWireTests.bytes("-1"), KafkaWireTests.bytes("1.5"), KafkaWireTests.bytes(" 1"),
            KafkaWireTests.bytes("abc"), [0, 0, 3], [0, 0, 0, 0, 3], KafkaWireTests.bytes("2147483648"),
            KafkaWireTests.bytes("99999999999999999999"), [0x80, 0, 0, 0], [0xFF, 0xFF, 0xFF, 0xFF],
        ])
        func garbageIsNil(_ bytes: [UInt8]) {
            #expect(KafkaReplyPartition.parse(bytes) == nil)
        }

        @Test func encodeIsDecimalText() {
            #expect(KafkaReplyPartition.encode(0) == [0x30])
            #expect(KafkaReplyPartition.encode(12) == KafkaWireTests.bytes("12"))
            #expect(KafkaReplyPartition.encodeBigEndian(3) == [0, 0, 0, 3])
            #expect(KafkaReplyPartition.encodeBigEndian(0x0102_0304) == [1, 2, 3, 4])
            for partition: Int32 in [0, 1, 9, 10, 255, 4096, Int32.max] {
                #expect(KafkaReplyPartition.parse(KafkaReplyPartition.encode(partition)) == partition)
            }
            for partition: Int32 in [0, 3, 255, 70_000] {
                #expect(KafkaReplyPartition.parse(KafkaReplyPartition.encodeBigEndian(partition)) == partition)
            }
        }
    }

    // MARK: - Records

    @Suite struct Records {
        typealias Header = KafkaRecordModel.Header
        static let id = "0b6f1c7e-5d2a-4c8e-9f3b-2a1d4e5f6a7b"
        /// Spring's default binary correlation: 16 raw bytes, not valid UTF-8.
        static let springID: [UInt8] = [
            0x9F, 0x1C, 0x00, 0xE2, 0x4B, 0x7A, 0x41, 0x02, 0x8C, 0xFF, 0x10, 0x33, 0xC0, 0x01, 0x5E, 0xAA,
        ]
        static let springIDHex = "9f1c00e24b7a41028cff1033c0015eaa"
        static let nestRequest = KafkaRecordModel(
            topic: "math.sum",
            partition: 2,
            value: KafkaWireTests.bytes("[1,2,3]"),
            headers: [
                Header(name: "kafka_correlationId", text: id),
                Header(name: "kafka_replyTopic", text: "math.sum.reply"),
                Header(name: "kafka_replyPartition", value: [0x30]),
            ]
        )

        @Test func headerNames() {
            #expect(KafkaHeaderName.correlationID == "kafka_correlationId")
            #expect(KafkaHeaderName.replyTopic == "kafka_replyTopic")
            #expect(KafkaHeaderName.replyPartition == "kafka_replyPartition")
            #expect(KafkaHeaderName.nestError == "kafka_nest-err")
            #expect(KafkaHeaderName.nestIsDisposed == "kafka_nest-is-disposed")
            #expect(KafkaHeaderName.timeoutMilliseconds == "courier-timeout-ms")
            #expect(KafkaHeaderName.extendMilliseconds == "courier-extend-ms")
            #expect(KafkaHeaderName.isReserved("kafka_anything") && KafkaHeaderName.isReserved("courier-x"))
            #expect(!KafkaHeaderName.isReserved("trace-id"))
        }

        // MARK: Requests

        /// §4.4: the request record, byte for byte.
        @Test func requestRecordMatchesNestJS() throws {
            let request = WireRequest(
                pattern: "math.sum",
                payload: KafkaWireTests.buffer("[1,2,3]"),
                correlationID: Self.id
            )
            let record = try KafkaRecordCodec.encodeRequest(
                request,
                replyTo: .init(topic: "math.sum.reply", partition: 0)
            )
            var expected = Self.nestRequest
            expected.partition = nil
            #expect(record == expected)
            #expect(record.value?.count == 7)
            #expect(record.key == nil)
        }

        @Test func requestCarriesTimeoutAndApplicationHeaders() throws {
            let request = WireRequest(
                pattern: "orders.create",
                payload: KafkaWireTests.buffer("\"abc\""),
                correlationID: "id-1",
                headers: ["trace": "t-1", "tenant": "acme", "kafka_correlationId": "spoof", "courier-timeout-ms": "1"],
                timeout: .milliseconds(2500)
            )
            let record = try KafkaRecordCodec.encodeRequest(
                request,
                replyTo: .init(topic: "orders.create.reply", partition: 12)
            )
            #expect(record.topic == "orders.create")
            #expect(record.value == KafkaWireTests.bytes("abc"))
            #expect(record.headers == [
                Header(name: "kafka_correlationId", text: "id-1"),
                Header(name: "kafka_replyTopic", text: "orders.create.reply"),
                Header(name: "kafka_replyPartition", text: "12"),
                Header(name: "courier-timeout-ms", text: "2500"),
                Header(name: "tenant", text: "acme"),
                Header(name: "trace", text: "t-1"),
            ])
        }

        @Test func requestWithoutPartitionLeavesTheHeaderOut() throws {
            let request = WireRequest(pattern: "a", payload: KafkaWireTests.buffer("null"), correlationID: "x")
            let record = try KafkaRecordCodec.encodeRequest(request, replyTo: .init(topic: "a.reply", partition: nil))
            #expect(record.value == nil)
            #expect(record.headers.map(\.name) == ["kafka_correlationId", "kafka_replyTopic"])
        }

        @Test func requestNeedsACorrelationIDAndLegalTopics() {
            for id in [String?.none, ""] {
                let request = WireRequest(pattern: "a", payload: KafkaWireTests.buffer("1"), correlationID: id)
                KafkaWireTests.expectError(.encodingFailed, containing: ["correlation id"]) {
                    _ = try KafkaRecordCodec.encodeRequest(request, replyTo: .init(topic: "a.reply", partition: 0))
                }
            }
            let object = WireRequest(
                pattern: "{\"cmd\":\"sum\"}",
                payload: KafkaWireTests.buffer("1"),
                correlationID: "x"
            )
            KafkaWireTests.expectError(.unprocessable, containing: ["'{\"cmd\":\"sum\"}'"]) {
                _ = try KafkaRecordCodec.encodeRequest(object, replyTo: .init(topic: "r", partition: 0))
            }
            let request = WireRequest(pattern: "a", payload: KafkaWireTests.buffer("1"), correlationID: "x")
            KafkaWireTests.expectError(.unprocessable, containing: ["'_rpc:response'"]) {
                _ = try KafkaRecordCodec.encodeRequest(request, replyTo: .init(topic: "_rpc:response", partition: 0))
            }
            let bad = WireRequest(pattern: "a", payload: KafkaWireTests.buffer("{"), correlationID: "x")
            KafkaWireTests.expectError(.encodingFailed) {
                _ = try KafkaRecordCodec.encodeRequest(bad, replyTo: .init(topic: "a.reply", partition: 0))
            }
        }

        @Test func eventHasNoCorrelationOrReplyHeaders() throws {
            let event = WireRequest(
                pattern: "user.created",
                payload: KafkaWireTests.buffer("\"ada\""),
                correlationID: nil,
                headers: ["trace": "t-9"],
                timeout: .seconds(3)
            )
            let record = try KafkaRecordCodec.encodeEvent(event)
            #expect(record == KafkaRecordModel(
                topic: "user.created",
                value: KafkaWireTests.bytes("ada"),
                headers: [Header(name: "trace", text: "t-9")]
            ))
            let decoded = KafkaRecordCodec.decodeRequest(record)
            #expect(decoded.request.isEvent)
            #expect(decoded.request.headers == ["trace": "t-9"])
            #expect(KafkaWireTests.text(decoded.request.payload) == "\"ada\"")
        }

        /// §4.4 from the worker's side.
        @Test func decodesNestJSRequest() {
            let inbound = KafkaRecordCodec.decodeRequest(Self.nestRequest)
            #expect(inbound.request.pattern == "math.sum")
            #expect(inbound.request.correlationID == Self.id)
            #expect(KafkaWireTests.text(inbound.request.payload) == "[1,2,3]")
            #expect(inbound.request.headers.isEmpty)
            #expect(inbound.request.timeout == nil)
            #expect(inbound.replyTo == .init(topic: "math.sum.reply", partition: 0))
            #expect(inbound.correlationBytes == KafkaWireTests.bytes(Self.id))
        }

        @Test func decodesSpringRequestAndEchoesItsBinaryCorrelation() throws {
            let record = KafkaRecordModel(
                topic: "math.sum",
                partition: 0,
                value: KafkaWireTests.bytes("{\"numbers\":[1,2]}"),
                headers: [
                    Header(name: "kafka_correlationId", value: Self.springID),
                    Header(name: "kafka_replyTopic", text: "spring-replies"),
                    Header(name: "kafka_replyPartition", value: [0, 0, 0, 3]),
                    Header(name: "__TypeId__", text: "com.example.Numbers"),
                ]
            )
            let inbound = KafkaRecordCodec.decodeRequest(record)
            #expect(inbound.request.correlationID == Self.springIDHex)
            #expect(inbound.correlationBytes == Self.springID)
            #expect(inbound.replyTo == .init(topic: "spring-replies", partition: 3))
            #expect(inbound.request.headers == ["__TypeId__": "com.example.Numbers"])

            let reply = WireReply(
                correlationID: try #require(inbound.request.correlationID),
                response: KafkaWireTests.buffer("3"),
                isDisposed: true
            )
            let out = try KafkaRecordCodec.encodeReply(
                reply,
                correlationBytes: try #require(inbound.correlationBytes),
                to: try #require(inbound.replyTo)
            )
            #expect(out.topic == "spring-replies")
            #expect(out.partition == 3)
            #expect(out.headers.first == Header(name: "kafka_correlationId", value: Self.springID))
            // And the caller side reads the same id text back.
            #expect(KafkaRecordCodec.decodeReply(out)?.correlationID == Self.springIDHex)
        }

        static let eventCases: [[Header]] = [
            [Header(name: "kafka_replyTopic", text: "a.reply")],
            [Header(name: "kafka_correlationId", value: []), Header(name: "kafka_replyTopic", text: "a.reply")],
            [Header(name: "kafka_correlationId", value: nil), Header(name: "kafka_replyTopic", text: "a.reply")],
            [Header(name: "kafka_correlationId", text: "id")],
            [Header(name: "kafka_correlationId", text: "id"), Header(name: "kafka_replyTopic", value: [])],
            [Header(name: "kafka_correlationId", text: "id"), Header(name: "kafka_replyTopic", value: nil)],
            // The last header of a name counts.
            [
                Header(name: "kafka_correlationId", text: "id"), Header(name: "kafka_replyTopic", text: "a.reply"),
                Header(name: "kafka_correlationId", value: []),
            ],
        ]

        @Test(arguments: eventCases)
        func missingOrEmptyCorrelationOrReplyTopicMeansEvent(_ headers: [Header]) {
            let inbound = KafkaRecordCodec.decodeRequest(
                KafkaRecordModel(topic: "a", partition: 0, value: KafkaWireTests.bytes("1"), headers: headers)
            )
            #expect(inbound.request.isEvent)
            #expect(inbound.replyTo == nil)
            #expect(inbound.correlationBytes == nil)
            #expect(KafkaWireTests.text(inbound.request.payload) == "1")
        }

        @Test func requestHeadersAndTimeout() {
            let record = KafkaRecordModel(
                topic: "a",
                partition: 0,
                value: nil,
                headers: [
                    Header(name: "kafka_correlationId", text: "id"),
                    Header(name: "kafka_replyTopic", text: "a.reply"),
                    Header(name: "kafka_replyPartition", text: "garbage"),
                    Header(name: "courier-timeout-ms", text: "2500"),
                    Header(name: "courier-other", text: "x"),
                    Header(name: "kafka_other", text: "x"),
                    Header(name: "trace", text: "first"),
                    Header(name: "trace", text: "second"),
                    Header(name: "binary", value: [0xFF, 0xFE]),
                    Header(name: "null", value: nil),
                    Header(name: "empty", value: []),
                ]
            )
            let inbound = KafkaRecordCodec.decodeRequest(record)
            #expect(inbound.request.timeout == .milliseconds(2500))
            #expect(inbound.request.headers == ["trace": "second", "empty": ""])
            #expect(inbound.replyTo == .init(topic: "a.reply", partition: nil))
            #expect(KafkaWireTests.text(inbound.request.payload) == "null")
        }

        @Test(arguments: ["-5", "1.5", "", "x", "99999999999999999999"])
        func badTimeoutsAreIgnored(_ value: String) {
            let record = KafkaRecordModel(topic: "a", value: nil, headers: [
                Header(name: "kafka_correlationId", text: "id"),
                Header(name: "kafka_replyTopic", text: "a.reply"),
                Header(name: "courier-timeout-ms", text: value),
            ])
            #expect(KafkaRecordCodec.decodeRequest(record).request.timeout == nil)
        }

        @Test func requestRoundTrip() throws {
            let request = WireRequest(
                pattern: "orders.create",
                payload: KafkaWireTests.buffer("{\"sku\":\"A-1\",\"qty\":2}"),
                correlationID: "c0ffee00-0000-4000-8000-000000000001",
                headers: ["tenant": "acme"],
                timeout: .seconds(5)
            )
            let record = try KafkaRecordCodec.encodeRequest(
                request,
                replyTo: .init(topic: "courier-replies-7", partition: 4)
            )
            let back = KafkaRecordCodec.decodeRequest(record)
            #expect(back.request.pattern == request.pattern)
            #expect(back.request.correlationID == request.correlationID)
            #expect(back.request.headers == request.headers)
            #expect(back.request.timeout == .seconds(5))
            #expect(KafkaWireTests.text(back.request.payload) == "{\"sku\":\"A-1\",\"qty\":2}")
            #expect(back.replyTo == .init(topic: "courier-replies-7", partition: 4))
        }

        // MARK: Replies

        static let address = KafkaRecordCodec.ReplyAddress(topic: "math.sum.reply", partition: 0)
        static let correlation = Header(name: "kafka_correlationId", text: id)
        static let disposed = Header(name: "kafka_nest-is-disposed", value: [0x00])

        static func encode(
            _ reply: WireReply,
            correlationBytes: [UInt8] = KafkaWireTests.bytes(Records.id)
        ) throws -> KafkaRecordModel {
            try KafkaRecordCodec.encodeReply(reply, correlationBytes: correlationBytes, to: address)
        }

        /// §4.4: the single reply of a unary handler.
        @Test func unaryReplyMatchesNestJS() throws {
            let reply = WireReply(correlationID: Self.id, response: KafkaWireTests.buffer("6"), isDisposed: true)
            let record = try Self.encode(reply)
            #expect(record == KafkaRecordModel(
                topic: "math.sum.reply",
                partition: 0,
                value: [0x36],
                headers: [Self.correlation, Self.disposed]
            ))
        }

        @Test func streamValuesAndDisposal() throws {
            let bytes = KafkaWireTests.bytes(Self.id)
            let value = try KafkaRecordCodec.encodeReply(
                WireReply(correlationID: Self.id, response: KafkaWireTests.buffer("\"tick\"")),
                correlationBytes: bytes,
                to: .init(topic: "t.reply", partition: nil)
            )
            let expected = KafkaRecordModel(
                topic: "t.reply",
                value: KafkaWireTests.bytes("tick"),
                headers: [Self.correlation]
            )
            #expect(value == expected)
            let end = try KafkaRecordCodec.encodeReply(
                WireReply(correlationID: Self.id, isDisposed: true),
                correlationBytes: bytes,
                to: .init(topic: "t.reply", partition: nil)
            )
            #expect(end == KafkaRecordModel(topic: "t.reply", value: nil, headers: [Self.correlation, Self.disposed]))
        }

        /// §4.4: NestJS's generic error, byte for byte (`status` before `message`).
        @Test func errorReplyWithObjectError() throws {
            struct Boom: Error {}
            let reply = WireReply.failure(correlationID: Self.id, error: Boom())
            let record = try Self.encode(reply)
            #expect(record.value == nil)
            #expect(record.headers == [
                Self.correlation,
                Header(name: "kafka_nest-err", text: "{\"status\":\"error\",\"message\":\"Internal server error\"}"),
                Self.disposed,
            ])
        }

        @Test func courierErrorKeepsNestOrderThenSortedKeys() throws {
            let error = CourierError(.unprocessable, "bad sku", details: ["sku": "A-1"])
            let reply = WireReply.failure(correlationID: "x", error: error)
            let record = try KafkaRecordCodec.encodeReply(reply, correlationBytes: [0x78], to: Self.address)
            let header = try #require(record.headers.first { $0.name == "kafka_nest-err" })
            #expect(header.value == KafkaWireTests.bytes(
                "{\"status\":\"error\",\"message\":\"bad sku\",\"code\":422,\"details\":{\"sku\":\"A-1\"}}"
            ))
            // And back to the same CourierError on the caller.
            let back = try #require(KafkaRecordCodec.decodeReply(record))
            let thrown = WireReply.callerError(from: try #require(back.error))
            #expect(thrown.code == .unprocessable)
            #expect(thrown.message == "bad sku")
            #expect(thrown.details == ["sku": "A-1"])
        }

        @Test func errorReplyWithStringErrorIsRawText() throws {
            let reply = WireReply.noHandler(correlationID: Self.id)
            let record = try Self.encode(reply)
            #expect(record.value == nil)
            #expect(record.headers == [
                Self.correlation,
                Header(name: "kafka_nest-err", text: WireReply.noHandlerMessage),
                Self.disposed,
            ])
            let back = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(back.error == .string(WireReply.noHandlerMessage))
            #expect(WireReply.callerError(from: try #require(back.error)).code == .noHandler)
        }

        @Test(arguments: [
            (JSONValue.array([1, "two"]), "[1,\"two\"]"),
            (.integer(42), "42"),
            (.bool(false), "false"),
            (.string("{not json"), "{not json"),
        ])
        func errorHeaderValues(_ error: JSONValue, _ text: String) {
            #expect(KafkaRecordCodec.errorHeaderValue(error) == KafkaWireTests.bytes(text))
        }

        @Test func errorWinsOverResponse() throws {
            let reply = WireReply(correlationID: "x", response: KafkaWireTests.buffer("1"), error: "nope")
            let record = try KafkaRecordCodec.encodeReply(reply, correlationBytes: [0x78], to: Self.address)
            #expect(record.value == nil)
            #expect(record.headers.map(\.name) == ["kafka_correlationId", "kafka_nest-err", "kafka_nest-is-disposed"])
        }

        @Test func extensionReply() throws {
            let reply = WireReply(correlationID: Self.id, extendDeadline: .seconds(2))
            let record = try Self.encode(reply)
            #expect(record == KafkaRecordModel(
                topic: "math.sum.reply",
                partition: 0,
                value: nil,
                headers: [Self.correlation, Header(name: "courier-extend-ms", text: "2000")]
            ))
            let back = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(back.extendDeadline == .milliseconds(2000))
            #expect(back.response == nil)
            #expect(!back.isDisposed)
            #expect(back.error == nil)
        }

        @Test func replyToAnIllegalTopicFails() {
            KafkaWireTests.expectError(.unprocessable, containing: ["'_rpc:response'"]) {
                _ = try KafkaRecordCodec.encodeReply(
                    WireReply(correlationID: "x", isDisposed: true),
                    correlationBytes: [0x78],
                    to: .init(topic: "_rpc:response", partition: nil)
                )
            }
        }

        // MARK: Replies, caller side

        static func reply(value: String?, _ headers: [Header]) -> KafkaRecordModel {
            KafkaRecordModel(
                topic: "math.sum.reply",
                partition: 0,
                value: value.map(KafkaWireTests.bytes),
                headers: headers
            )
        }

        @Test func decodesNestJSUnaryReply() throws {
            let record = Self.reply(value: "6", [Self.correlation, Self.disposed])
            let reply = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(reply.correlationID == Self.id)
            #expect(KafkaWireTests.text(reply.response) == "6")
            #expect(reply.isDisposed)
            #expect(reply.error == nil)
            #expect(reply.extendDeadline == nil)
        }

        /// Pitfall 8 / §4.4: NestJS ends an async stream with a null-valued disposed record; it is not data.
        @Test func disposedNullIsNotDelivered() throws {
            let last = Self.reply(value: nil, [Self.correlation, Self.disposed])
            let end = try #require(KafkaRecordCodec.decodeReply(last))
            #expect(end.isDisposed)
            #expect(end.response == nil)
            // A null value in the middle of a stream is a real `null`.
            let middle = try #require(KafkaRecordCodec.decodeReply(Self.reply(value: nil, [Self.correlation])))
            #expect(!middle.isDisposed)
            #expect(KafkaWireTests.text(middle.response) == "null")
        }

        @Test(arguments: [[UInt8](), [0x00], [0x01], KafkaWireTests.bytes("true")])
        func disposedIsPresenceOnly(_ value: [UInt8]) throws {
            let marker = Header(name: "kafka_nest-is-disposed", value: value)
            let record = Self.reply(value: "1", [Self.correlation, marker])
            let reply = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(reply.isDisposed)
            #expect(KafkaWireTests.text(reply.response) == "1")
            let nullMarker = Header(name: "kafka_nest-is-disposed", value: nil)
            let nullValued = Self.reply(value: nil, [Self.correlation, nullMarker])
            #expect(try #require(KafkaRecordCodec.decodeReply(nullValued)).isDisposed)
        }

        @Test func decodesNestJSErrorReply() throws {
            let record = Self.reply(value: nil, [
                Self.correlation,
                Header(name: "kafka_nest-err", text: "{\"status\":\"error\",\"message\":\"Internal server error\"}"),
                Self.disposed,
            ])
            let reply = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(reply.error == ["status": "error", "message": "Internal server error"])
            #expect(reply.isDisposed)
            #expect(reply.response == nil)
            #expect(WireReply.callerError(from: try #require(reply.error)).code == .remote)
        }

        @Test(arguments: [
            ("[1,2]", JSONValue?.some([1, 2])),
            ("{bad", .string("{bad")),
            ("5", .string("5")),
            ("plain text", .string("plain text")),
            ("", nil),
        ])
        func errorHeaderIsReadAsNestJSReadsIt(_ text: String, _ expected: JSONValue?) throws {
            // NestJS's no-handler reply: an error without is-disposed, which still ends the call.
            let record = Self.reply(value: "ignored", [Self.correlation, Header(name: "kafka_nest-err", text: text)])
            let reply = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(reply.error == expected)
            #expect(reply.isDisposed)
            #expect(reply.response == nil)
        }

        @Test func binaryErrorHeaderIsALossyString() throws {
            let record = Self.reply(value: nil, [Self.correlation, Header(name: "kafka_nest-err", value: [0x00, 0xFF])])
            #expect(try #require(KafkaRecordCodec.decodeReply(record)).error == .string("\u{0}\u{FFFD}"))
        }

        @Test(arguments: [
            [Header](),
            [Header(name: "kafka_correlationId", value: [])],
            [Header(name: "kafka_correlationId", value: nil)],
            [Header(name: "kafka_nest-is-disposed", value: [0])],
        ])
        func replyWithoutCorrelationIsIgnored(_ headers: [Header]) {
            #expect(KafkaRecordCodec.decodeReply(Self.reply(value: "1", headers)) == nil)
        }

        @Test func nestJSRawStringReply() throws {
            let record = Self.reply(value: "hello", [Self.correlation, Self.disposed])
            let reply = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(KafkaWireTests.text(reply.response) == "\"hello\"")
        }

        @Test func correlationIDText() {
            #expect(KafkaRecordCodec.correlationID(from: KafkaWireTests.bytes(Self.id)) == Self.id)
            #expect(KafkaRecordCodec.correlationID(from: Self.springID) == Self.springIDHex)
            #expect(KafkaRecordCodec.correlationID(from: [0xC3]) == "c3")  // truncated UTF-8
        }

        /// Every reply packet Courier sends reads back as the same packet.
        @Test(arguments: [
            WireReply(correlationID: "r", response: ByteBuffer(string: "{\"a\":[1,null]}"), isDisposed: true),
            WireReply(correlationID: "r", response: ByteBuffer(string: "[1,2]")),
            WireReply(correlationID: "r", response: ByteBuffer(string: "42")),
            WireReply(correlationID: "r", response: ByteBuffer(string: "\"hello\""), isDisposed: true),
            WireReply(correlationID: "r", response: ByteBuffer(string: "null")),
            WireReply(correlationID: "r", isDisposed: true),
            WireReply(correlationID: "r", error: ["status": "error", "message": "m", "code": 409], isDisposed: true),
            WireReply(correlationID: "r", error: "text error", isDisposed: true),
            WireReply(correlationID: "r", extendDeadline: .milliseconds(750)),
        ])
        func replyRoundTrip(_ reply: WireReply) throws {
            let record = try Self.encode(reply, correlationBytes: KafkaWireTests.bytes("r"))
            let back = try #require(KafkaRecordCodec.decodeReply(record))
            #expect(back.correlationID == reply.correlationID)
            #expect(back.error == reply.error)
            #expect(back.isDisposed == reply.isDisposed)
            #expect(back.extendDeadline == reply.extendDeadline)
            let sent = try reply.response.map { try JSONValue(parsing: String(buffer: $0)) }
            let received = try back.response.map { try JSONValue(parsing: String(buffer: $0)) }
            #expect(received == sent)
        }

        @Test func consumerMessageConversion() {
            let message = KafkaConsumerMessage(
                topic: "t",
                partition: 3,
                offset: 9,
                key: [1],
                value: [2],
                headers: [.init(name: "h", value: nil), .init(name: "h", value: [7])]
            )
            let record = KafkaRecordModel(message)
            #expect(record == KafkaRecordModel(
                topic: "t",
                partition: 3,
                key: [1],
                value: [2],
                headers: [Header(name: "h", value: nil), Header(name: "h", value: [7])]
            ))
            #expect(record.lastHeader(named: "h") == .some([7]))
            #expect(record.lastHeader(named: "missing") == nil)
            #expect(record.hasHeader(named: "h"))
            #expect(record.producerHeaders.map(\.0) == ["h", "h"])
            #expect(record.producerHeaders.map(\.1) == [[], [7]])
        }
    }

    @Suite struct SpringRequestHeaders {
        static let id = "9f1c00e2-4b7a-4102-8cff-1033c0015eaa"

        @Test func springRequestsCarryABinaryCorrelationAndPartition() throws {
            let request = WireRequest(pattern: "math.sum", payload: KafkaWireTests.buffer("[1,2]"),
                                      correlationID: Self.id)
            let record = try KafkaRecordCodec.encodeRequest(request, replyTo: .init(topic: "replies", partition: 3),
                                                            format: .spring)
            #expect(record.lastHeader(named: "kafka_correlationId") == .some(KafkaWireTests.Records.springID))
            #expect(record.lastHeader(named: "kafka_replyPartition") == .some([0, 0, 0, 3]))
            #expect(record.lastHeader(named: "kafka_replyTopic") == .some(KafkaWireTests.bytes("replies")))

            // What a Courier worker makes of it: the same partition, the bytes kept for the reply.
            let inbound = KafkaRecordCodec.decodeRequest(record)
            #expect(inbound.replyTo == .init(topic: "replies", partition: 3))
            #expect(inbound.correlationBytes == KafkaWireTests.Records.springID)
        }

        @Test func springRepliesAreMatchedBackToTheUUIDText() throws {
            let reply = WireReply(correlationID: "ignored", response: KafkaWireTests.buffer("3"), isDisposed: true)
            let record = try KafkaRecordCodec.encodeReply(reply, correlationBytes: KafkaWireTests.Records.springID,
                                                          to: .init(topic: "replies", partition: 3))
            #expect(KafkaRecordCodec.decodeReply(record, format: .spring)?.correlationID == Self.id)
            #expect(KafkaRecordCodec.decodeReply(record)?.correlationID == KafkaWireTests.Records.springIDHex)
        }

        @Test func idsThatAreNotUUIDsAndTheNestJSFormatStayText() throws {
            let custom = WireRequest(pattern: "p", payload: KafkaWireTests.buffer("1"), correlationID: "order-17")
            let spring = try KafkaRecordCodec.encodeRequest(custom, replyTo: .init(topic: "r", partition: 0),
                                                            format: .spring)
            #expect(spring.lastHeader(named: "kafka_correlationId") == .some(KafkaWireTests.bytes("order-17")))
            let uuid = WireRequest(pattern: "p", payload: KafkaWireTests.buffer("1"), correlationID: Self.id)
            let nest = try KafkaRecordCodec.encodeRequest(uuid, replyTo: .init(topic: "r", partition: 12))
            #expect(nest.lastHeader(named: "kafka_correlationId") == .some(KafkaWireTests.bytes(Self.id)))
            #expect(nest.lastHeader(named: "kafka_replyPartition") == .some(KafkaWireTests.bytes("12")))
            #expect(KafkaRequestHeaderFormat(name: "Spring") == .spring)
            #expect(KafkaRequestHeaderFormat(name: "nestjs") == .nestJS)
            #expect(KafkaRequestHeaderFormat(name: "json") == nil)
        }
    }
}

/// Records from the broker never crash the codec: random and mutated headers and values (seeded, so a failure
/// repeats) may only decode or be refused.
@Suite(.cpuBound) struct KafkaRecordFuzzTests {
    @Test func mutatedRecordsNeverCrashTheCodec() async {
        var random = SeededRandom(state: 0x4B_AF_CA_FE)
        let names = [KafkaHeaderName.correlationID, KafkaHeaderName.replyTopic, KafkaHeaderName.replyPartition,
                     KafkaHeaderName.nestError, KafkaHeaderName.nestIsDisposed, KafkaHeaderName.timeoutMilliseconds,
                     KafkaHeaderName.extendMilliseconds, "kafka_correlationId", "kafka_replyTopic", "x-custom",
                     "kafka_replyPartition"]
        let values: [[UInt8]] = [
            [], [0x00], [0x01], [0xFF, 0xFE], Array("7".utf8), Array("-1".utf8), Array("99999999999999999999".utf8),
            Array("1e30".utf8), Array("math.sum.reply".utf8), Array("bad topic".utf8), Array(#"{"status":"error"}"#.utf8),
            Array(#"{"message":1,"code":"x"}"#.utf8), Array("[1,2,3]".utf8), Array("\u{0}".utf8),
            Array(String(repeating: "[", count: 700).utf8), Array("0b6f1c7e-0000-0000-0000-000000000000".utf8),
        ]
        for index in 0..<5_000 {
            if index % 100 == 99 { await Task.yield() }  // see DecoderFuzzTests: do not hold a pool thread
            var headers: [KafkaHeader] = []
            for _ in 0..<Int.random(in: 0...6, using: &random) {
                var value: [UInt8]? = values.randomElement(using: &random)!
                if Bool.random(using: &random), var bytes = value, !bytes.isEmpty {
                    bytes[Int.random(in: 0..<bytes.count, using: &random)] = UInt8.random(in: 0...255, using: &random)
                    value = bytes
                }
                if Int.random(in: 0..<8, using: &random) == 0 { value = nil }
                headers.append(KafkaHeader(name: names.randomElement(using: &random)!, value: value))
            }
            let value: [UInt8]? = Bool.random(using: &random) ? values.randomElement(using: &random)! : nil
            let record = KafkaRecordModel(topic: "math.sum", partition: 0, value: value, headers: headers)
            _ = KafkaRecordCodec.decodeRequest(record)
            _ = KafkaRecordCodec.decodeReply(record)
            _ = KafkaRecordCodec.decodeReply(record, format: .spring)
            if let bytes = headers.first?.value {
                _ = KafkaRecordCodec.correlationID(from: bytes)
                _ = KafkaRecordCodec.errorValue(fromHeader: bytes)
            }
        }
    }
}
