//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

/// A pattern a handler is registered under: exact, or with wildcard segments.
///
/// Patterns are split into segments at `.`:
/// - `*` as a whole segment matches exactly one segment: `orders.*.created` matches `orders.42.created`
///   but neither `orders.created` nor `orders.4.2.created`.
/// - `**` as the **last** segment matches one or more remaining segments: `audit.**` matches `audit.log` and
///   `audit.user.login`, but not `audit`.
/// - Any other segment, including one that merely contains `*` (such as `a*b`), matches itself literally.
///
/// When several routes match, the most specific wins: an exact route first, then, comparing segment by segment
/// from the left, a literal beats `*`, which beats `**`.
public struct RoutePattern: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Sendable, Hashable, Comparable {
        // Declared from most to least specific, so `<` sorts specific routes first.
        case literal(Substring)
        case one
        case rest

        static func < (lhs: Segment, rhs: Segment) -> Bool {
            switch (lhs, rhs) {
            case (.literal, .one), (.literal, .rest), (.one, .rest): true
            default: false
            }
        }
    }

    /// The pattern as registered.
    public let text: String
    let segments: [Segment]

    /// Whether the pattern contains wildcard segments.
    public var isWildcard: Bool { segments.contains { !$0.isLiteral } }

    /// Parses a pattern.
    ///
    /// - Throws: ``CourierError`` with code ``CourierError/Code/unprocessable`` when the pattern is empty or `**`
    ///   is not the last segment.
    public init(_ text: String) throws {
        guard !text.isEmpty else {
            throw CourierError(.unprocessable, "a pattern cannot be empty")
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        var segments: [Segment] = []
        segments.reserveCapacity(parts.count)
        for (index, part) in parts.enumerated() {
            switch part {
            case "*": segments.append(.one)
            case "**":
                guard index == parts.count - 1 else {
                    throw CourierError(
                        .unprocessable,
                        "invalid pattern '\(text)': '**' may only be the last segment"
                    )
                }
                segments.append(.rest)
            default: segments.append(.literal(part))
            }
        }
        self.text = text
        self.segments = segments
    }

    /// Whether a concrete pattern name matches this route.
    public func matches(_ name: String) -> Bool {
        if !isWildcard { return name == text }
        var remaining = name[...]
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            switch segment {
            case .rest:
                // One or more segments: anything non-empty is fine (its dots are the extra segments).
                return !remaining.isEmpty
            case .one, .literal:
                let end = remaining.firstIndex(of: ".")
                let head = remaining[remaining.startIndex..<(end ?? remaining.endIndex)]
                if case .literal(let literal) = segment, head != literal { return false }
                if case .one = segment, head.isEmpty { return false }
                if isLast { return end == nil }
                guard let end else { return false }
                remaining = remaining[remaining.index(after: end)...]
            }
        }
        return remaining.isEmpty
    }

    /// Orders routes so that the most specific comes first.
    static func isMoreSpecific(_ lhs: RoutePattern, than rhs: RoutePattern) -> Bool {
        for (l, r) in zip(lhs.segments, rhs.segments) where l.kindRank != r.kindRank {
            return l.kindRank < r.kindRank
        }
        if lhs.segments.count != rhs.segments.count { return lhs.segments.count > rhs.segments.count }
        return lhs.text < rhs.text
    }

    public var description: String { text }
}

extension RoutePattern.Segment {
    var isLiteral: Bool { if case .literal = self { true } else { false } }
    var kindRank: Int {
        switch self {
        case .literal: 0
        case .one: 1
        case .rest: 2
        }
    }
}

/// A lookup table from concrete pattern names to registered values (handlers), honouring ``RoutePattern`` rules.
public struct RouteTable<Value: Sendable>: Sendable {
    private var exact: [String: (route: RoutePattern, value: Value)] = [:]
    private var wildcards: [(route: RoutePattern, value: Value)] = []

    public init() {}

    /// All registered patterns, exact and wildcard, in registration-independent order.
    public var patterns: [RoutePattern] {
        exact.values.map(\.route).sorted { $0.text < $1.text } + wildcards.map(\.route)
    }

    /// Whether no route is registered.
    public var isEmpty: Bool { exact.isEmpty && wildcards.isEmpty }

    /// Registers a value for a route.
    ///
    /// - Throws: ``CourierError`` when the same pattern is registered twice.
    public mutating func insert(_ value: Value, for route: RoutePattern) throws {
        if route.isWildcard {
            guard !wildcards.contains(where: { $0.route == route }) else {
                throw CourierError(.unprocessable, "a handler for '\(route)' is already registered")
            }
            wildcards.append((route, value))
            wildcards.sort { RoutePattern.isMoreSpecific($0.route, than: $1.route) }
        } else {
            guard exact[route.text] == nil else {
                throw CourierError(.unprocessable, "a handler for '\(route)' is already registered")
            }
            exact[route.text] = (route, value)
        }
    }

    /// Finds the most specific route matching `name`.
    public func lookup(_ name: String) -> (route: RoutePattern, value: Value)? {
        if let entry = exact[name] { return entry }
        for entry in wildcards where entry.route.matches(name) {
            return entry
        }
        return nil
    }

    /// Finds the value for `name`, without reporting which route matched (the fast path).
    public func value(for name: String) -> Value? {
        if let entry = exact[name] { return entry.value }
        return wildcards.first { $0.route.matches(name) }?.value
    }
}
