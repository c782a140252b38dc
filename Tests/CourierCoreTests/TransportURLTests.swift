//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Testing

@Suite struct TransportURLTests {
    @Test func tcpHostAndPort() throws {
        let url = try TransportURL("tcp://127.0.0.1:3000")
        #expect(url.scheme == "tcp")
        #expect(url.host == "127.0.0.1")
        #expect(url.endpoints.map(\.host) == ["127.0.0.1"])
        #expect(url.endpoints.map(\.port) == [3000])
        #expect(url.port(default: 1) == 3000)
        #expect(url.user == nil)
        #expect(url.password == nil)
        #expect(url.path == "")
        #expect(url.options.isEmpty)
        #expect(url.description == "tcp://127.0.0.1:3000")
    }

    @Test func schemeIsLowercased() throws {
        let url = try TransportURL("TCP://Example.com:1")
        #expect(url.scheme == "tcp")
        #expect(url.host == "Example.com")
    }

    @Test func missingPortUsesTheDefault() throws {
        let url = try TransportURL("redis://cache")
        #expect(url.endpoints.first?.port == nil)
        #expect(url.port(default: 6379) == 6379)
        #expect(url.description == "redis://cache")
    }

    @Test func redisWithCredentialsAndDatabase() throws {
        let url = try TransportURL("redis://user:p%40ss@host:6379/2")
        #expect(url.scheme == "redis")
        #expect(url.user == "user")
        #expect(url.password == "p@ss")
        #expect(url.host == "host")
        #expect(url.port(default: 0) == 6379)
        #expect(url.path == "2")
    }

    @Test func descriptionHidesThePassword() throws {
        let url = try TransportURL("redis://user:p%40ss@host:6379/2")
        #expect(url.description == "redis://user:***@host:6379/2")
        #expect(!url.description.contains("p@ss"))
        #expect(!url.description.contains("p%40ss"))
        #expect(!"\(url)".contains("ss@"))
    }

    @Test func userWithoutPassword() throws {
        let url = try TransportURL("redis://admin@host:6379")
        #expect(url.user == "admin")
        #expect(url.password == nil)
        #expect(url.description == "redis://admin@host:6379")
    }

    @Test func passwordContainingAtSignUsesTheLastAt() throws {
        let url = try TransportURL("redis://user:a@b@host:1")
        #expect(url.user == "user")
        #expect(url.password == "a@b")
        #expect(url.host == "host")
    }

    @Test func kafkaWithSeveralBrokersAndOptions() throws {
        let url = try TransportURL("kafka://a:9092,b:9093?group=x")
        #expect(url.scheme == "kafka")
        #expect(url.endpoints.map(\.host) == ["a", "b"])
        #expect(url.endpoints.map(\.port) == [9092, 9093])
        #expect(url.host == "a")
        #expect(url.options == ["group": "x"])
        #expect(url.description == "kafka://a:9092,b:9093?group=x")
    }

    @Test func queryOptionsArePercentDecoded() throws {
        let url = try TransportURL("kafka://a:9092?group=my%20group&flag&client%2Did=c1&empty=")
        #expect(url.options == ["group": "my group", "flag": "", "client-id": "c1", "empty": ""])
    }

    @Test func bracketedIPv6Host() throws {
        let url = try TransportURL("tcp://[::1]:3000")
        #expect(url.host == "::1")
        #expect(url.port(default: 0) == 3000)
        #expect(url.description == "tcp://[::1]:3000")
        let noPort = try TransportURL("tcp://[fe80::1]")
        #expect(noPort.host == "fe80::1")
        #expect(noPort.endpoints.first?.port == nil)
    }

    @Test func parsedDescriptionParsesBackToTheSameURL() throws {
        for text in ["tcp://127.0.0.1:3000", "kafka://a:9092,b:9093?group=x", "tcp://[::1]:3000", "redis://h:1/3"] {
            let url = try TransportURL(text)
            #expect(try TransportURL(url.description) == url, "\(text)")
        }
    }

    @Test(arguments: [
        ("127.0.0.1:3000", "expected scheme://host:port"),
        ("localhost", "expected scheme://host:port"),
        ("tcp:/host:1", "expected scheme://host:port"),
        ("://host:3000", "missing scheme"),
        ("tcp://", "missing host"),
        ("tcp://:3000", "missing host"),
        ("tcp://user:pw@:3000", "missing host"),
        ("tcp:///path", "missing host"),
        ("tcp://host:abc", "bad port"),
        ("tcp://host:70000", "bad port"),
        ("tcp://host:-1", "bad port"),
        ("tcp://host:", "bad port"),
        ("tcp://[::1]:x", "bad port"),
        ("kafka://a:9092,b:port", "bad port"),
        // A typo after an IPv6 host's `]` must not leave the port to the default (tcp://[::1]3001 is not :3000).
        ("tcp://[::1]3001", "bad port"),
        ("tcp://[::1:3000", "missing ']'"),
        // A malformed escape must not drop the credential silently (connecting without the password).
        ("redis://:50%off@cache:6379", "bad percent-escape in the password"),
        ("redis://al%zzce:pw@cache:6379", "bad percent-escape in the user"),
    ])
    func invalidURLsAreRejected(_ text: String, _ reason: String) {
        let error = #expect(throws: CourierError.self, "\(text)") {
            _ = try TransportURL(text)
        }
        #expect(error?.code == .unprocessable)
        #expect(error?.message.contains(reason) == true, "\(String(describing: error))")
        #expect(error?.message.contains("invalid transport URL '\(text)'") == true)
    }
}
