//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// Thrown by ``CourierJSONEncoder`` and ``CourierJSONDecoder`` when a value needs behaviour that only Foundation's
/// `JSONEncoder`/`JSONDecoder` have.
///
/// The fast coders are a Foundation-free reimplementation of Foundation's default JSON strategies for the common case.
/// Rather than approximate the rest, they give up with this error and the caller redoes the whole value with
/// Foundation, so the result is always exactly Foundation's. ``PayloadCoder`` does this. The error is thrown for:
///
/// - types that Foundation's coders special-case instead of using the type's own `Codable` conformance (`Data`,
///   `URL`, `Decimal`; see ``FoundationSpecialTypes``);
/// - encoder use that a single forward pass over the output cannot reproduce: writing to a container after a
///   container opened later has been written to, or giving one key two values (Foundation overwrites or merges).
///
/// Once a coder has thrown it, the coder keeps failing with it until the end of that call, even if the `Codable`
/// code in between swallowed the error, because the output may already be inconsistent.
package enum CourierJSONCodingError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The value cannot be handled without Foundation; the string says why, for logs.
    case unsupported(String)

    /// A sentence naming what was not supported.
    package var description: String {
        switch self {
        case .unsupported(let reason): "unsupported by the fast JSON coder: \(reason)"
        }
    }
}

/// The Foundation types whose JSON form Foundation's coders choose themselves rather than through the type's own
/// `Codable` conformance.
///
/// With default strategies `JSONEncoder` writes `Data` as a base64 string, `URL` as its absolute string and `Decimal`
/// as a plain number, where their conformances would write a byte array and keyed objects; `JSONDecoder` mirrors
/// that. (`Date`'s default strategy defers to its own conformance, so the fast coders handle it.) This library does
/// not import Foundation, so it names the types by their mangled names and resolves them to metatypes once through
/// the runtime; names whose module is not loaded resolve to nothing, and a process without Foundation has no such
/// values. Checking a type is then a few pointer comparisons.
enum FoundationSpecialTypes {
    /// `Data`, `URL` and `Decimal` as defined in swift-foundation's `FoundationEssentials` (Linux, Swift 6) and in
    /// Apple's `Foundation`.
    private static let mangledNames = [
        "20FoundationEssentials4DataV", "20FoundationEssentials3URLV", "20FoundationEssentials7DecimalV",
        "10Foundation4DataV", "10Foundation3URLV", "10Foundation7DecimalV",
    ]

    /// The metatypes of the names that resolved in this process.
    private static let identifiers: [ObjectIdentifier] = mangledNames.compactMap { name in
        _typeByName(name).map { ObjectIdentifier($0) }
    }

    /// Whether values of `type` must be coded by Foundation.
    ///
    /// - Parameter type: The static type about to be encoded or decoded.
    @inline(__always)
    static func contains(_ type: Any.Type) -> Bool {
        let identifier = ObjectIdentifier(type)
        for candidate in identifiers where candidate == identifier {
            return true
        }
        return false
    }

    /// The error to throw for `type`.
    ///
    /// - Parameter type: The special type that was met.
    static func unsupported(_ type: Any.Type) -> CourierJSONCodingError {
        .unsupported("\(type) is coded specially by Foundation")
    }
}

/// The coding key for a position in an array, spelled as Foundation's coders spell it (`Index 3`), so that coding
/// paths in errors compare equal to theirs.
struct JSONIndexKey: CodingKey, Sendable {
    /// The position.
    let index: Int

    /// Makes the key for position `index`.
    ///
    /// - Parameter index: The zero-based position.
    init(_ index: Int) {
        self.index = index
    }

    /// `Index N`, as Foundation writes it.
    var stringValue: String { "Index \(index)" }

    /// The position.
    var intValue: Int? { index }

    /// Only integer keys are positions.
    init?(stringValue: String) {
        nil
    }

    /// Makes the key for position `intValue`.
    init?(intValue: Int) {
        self.index = intValue
    }
}

/// The key `superEncoder()` and `superDecoder()` use, `super`, as in Foundation.
struct JSONSuperKey: CodingKey, Sendable {
    /// Always `super`.
    var stringValue: String { "super" }

    /// Never an integer key.
    var intValue: Int? { nil }

    /// Makes the key.
    init() {}

    /// Accepts only `super`.
    init?(stringValue: String) {
        guard stringValue == "super" else { return nil }
    }

    /// Never an integer key.
    init?(intValue: Int) {
        nil
    }
}

/// One step of a coding path: how a nested value is reached from its container.
///
/// Positions are kept as integers and turned into ``JSONIndexKey``s only when a path is actually needed, which is
/// rare (errors and explicit `codingPath` reads).
enum JSONPathStep {
    /// A member of an object.
    case key(any CodingKey)
    /// An element of an array.
    case index(Int)

    /// The step as a coding key.
    var codingKey: any CodingKey {
        switch self {
        case .key(let key): key
        case .index(let index): JSONIndexKey(index)
        }
    }
}
