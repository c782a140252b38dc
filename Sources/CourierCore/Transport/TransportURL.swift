//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A transport address such as `tcp://127.0.0.1:3000`, `redis://user:pass@host:6379/2` or
/// `kafka://host1:9092,host2:9092?group=billing`.
///
/// Form: `scheme://[user[:password]@]host:port[,host:port…][/path][?key=value&…]`. The scheme names the transport;
/// each transport documents the query options it reads.
public struct TransportURL: Sendable, Hashable, CustomStringConvertible {
    /// A host and port pair.
    public struct Endpoint: Sendable, Hashable {
        /// The host name or address (IPv6 without brackets).
        public var host: String
        /// The port, if the URL names one.
        public var port: Int?
    }

    /// The scheme, lowercased (`tcp`, `redis`, `kafka`, …).
    public var scheme: String
    /// The user name, if given.
    public var user: String?
    /// The password, if given.
    public var password: String?
    /// One or more endpoints (Kafka accepts a comma-separated list).
    public var endpoints: [Endpoint]
    /// The path after the endpoints, without the leading `/` (Redis: the database number).
    public var path: String
    /// Query options.
    public var options: [String: String]

    /// Parses a URL.
    ///
    /// - Throws: ``CourierError`` with ``CourierError/Code/unprocessable`` and a message naming the problem.
    public init(_ text: String) throws {
        func fail(_ why: String) -> CourierError {
            CourierError(.unprocessable, "invalid transport URL '\(text)': \(why)")
        }
        guard let colon = text.firstIndex(of: ":"), text[colon...].hasPrefix("://") else {
            throw fail("expected scheme://host:port")
        }
        scheme = text[..<colon].lowercased()
        guard !scheme.isEmpty else { throw fail("missing scheme") }
        var rest = text[text.index(colon, offsetBy: 3)...]
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        if let at = rest.lastIndex(of: "@") {
            let credentials = rest[..<at]
            rest = rest[rest.index(after: at)...]
            func decoded(_ text: Substring, _ what: String) throws -> String {
                guard let value = String(text).removingPercentEncoding else {
                    throw fail("bad percent-escape in the \(what) (write a literal % as %25)")
                }
                return value
            }
            if let colon = credentials.firstIndex(of: ":") {
                user = try decoded(credentials[..<colon], "user")
                password = try decoded(credentials[credentials.index(after: colon)...], "password")
            } else {
                user = try decoded(credentials, "user")
            }
            if user == "" { user = nil }
        }
        var hosts = rest
        path = ""
        if let slash = rest.firstIndex(of: "/") {
            hosts = rest[..<slash]
            path = String(rest[rest.index(after: slash)...])
        }
        endpoints = []
        for part in hosts.split(separator: ",") {
            var host = Substring(part)
            var port: Int?
            if host.hasPrefix("[") {  // [::1]:3000
                guard let close = host.firstIndex(of: "]") else { throw fail("missing ']' in '\(part)'") }
                let after = host[host.index(after: close)...]
                if !after.isEmpty {
                    guard after.hasPrefix(":"), let value = Int(after.dropFirst()), (0...65535).contains(value) else {
                        throw fail("bad port in '\(part)'")
                    }
                    port = value
                }
                host = host[host.index(after: host.startIndex)..<close]
            } else if let colon = host.lastIndex(of: ":") {
                guard let value = Int(host[host.index(after: colon)...]), (0...65535).contains(value) else {
                    throw fail("bad port in '\(part)'")
                }
                port = value
                host = host[..<colon]
            }
            guard !host.isEmpty else { throw fail("missing host") }
            endpoints.append(Endpoint(host: String(host), port: port))
        }
        guard !endpoints.isEmpty else { throw fail("missing host") }
        options = [:]
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]).removingPercentEncoding ?? String(parts[0])
            let value = parts.count > 1 ? (String(parts[1]).removingPercentEncoding ?? String(parts[1])) : ""
            options[key] = value
        }
    }

    /// The first endpoint's host.
    public var host: String { endpoints[0].host }
    /// The first endpoint's port, or `defaultPort`.
    public func port(default defaultPort: Int) -> Int { endpoints[0].port ?? defaultPort }

    public var description: String {
        var text = "\(scheme)://"
        if let user { text += password == nil ? "\(user)@" : "\(user):***@" }
        text += endpoints.map { endpoint in
            let host = endpoint.host.contains(":") ? "[\(endpoint.host)]" : endpoint.host
            return endpoint.port.map { "\(host):\($0)" } ?? host
        }.joined(separator: ",")
        if !path.isEmpty { text += "/\(path)" }
        if !options.isEmpty {
            text += "?" + options.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        }
        return text
    }
}

extension String {
    /// Decodes `%XX` escapes; `nil` when an escape is malformed or the result is not UTF-8.
    var removingPercentEncoding: String? {
        guard contains("%") else { return self }
        var bytes: [UInt8] = []
        var iterator = utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let high = iterator.next(), let low = iterator.next(),
                    let value = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16)
                else { return nil }
                bytes.append(value)
            } else {
                bytes.append(byte)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }
}
