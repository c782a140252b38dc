//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import Courier
import CourierTCP

/// Builds transports from URLs (`tcp://host:port`).
enum TransportFactory {
    static let supportedSchemes = ["tcp"]

    static func client(for text: String) throws -> any ClientTransport {
        let url = try TransportURL(text)
        switch url.scheme {
        case "tcp": return TCPClientTransport(configuration: try TCPConfiguration(url: url))
        default: throw unsupported(url)
        }
    }

    static func server(for text: String) throws -> any ServerTransport {
        let url = try TransportURL(text)
        switch url.scheme {
        case "tcp": return TCPServerTransport(configuration: try TCPConfiguration(url: url))
        default: throw unsupported(url)
        }
    }

    /// The address a server is reachable at once it serves, as a URL.
    static func readyURL(of server: any ServerTransport) async throws -> String {
        if let tcp = server as? TCPServerTransport {
            let address = try await tcp.localAddress()
            let host = address.ipAddress ?? "127.0.0.1"
            return "tcp://\(host.contains(":") ? "[\(host)]" : host):\(address.port ?? 0)"
        }
        return server.name
    }

    private static func unsupported(_ url: TransportURL) -> CourierError {
        CourierError(
            .unprocessable,
            "unsupported transport '\(url.scheme)'; supported: \(supportedSchemes.joined(separator: ", "))"
        )
    }
}
