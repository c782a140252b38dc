//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore

/// Kafka's topic-name rules, and how Courier routes become topics and subscriptions.
///
/// On Kafka a NestJS pattern is used verbatim as the request topic and `<pattern>.reply` as the reply topic, so a
/// pattern must be a legal topic name. Kafka (`Topic.java`) allows only `[A-Za-z0-9._-]`, 1…249 characters, and
/// neither `.` nor `..`. Object patterns such as `{"cmd":"sum"}`, and anything with `:`, `/`, spaces or `{`, can
/// therefore never travel over Kafka; Courier rejects them when a handler is registered instead of failing at the
/// first produce.
///
/// Two more rules are only warnings, because Kafka itself accepts such names:
/// - names starting with `__` look like Kafka's internal topics (`__consumer_offsets`);
/// - Kafka treats `.` and `_` as the same character in metric names, so `a.b` and `a_b` cannot coexist on one
///   cluster; a name using both characters is the likeliest to collide.
public enum KafkaTopicName {
    /// A rule that Kafka does not enforce but that a topic name should still follow.
    public enum Warning: Sendable, Hashable, CustomStringConvertible {
        /// The name starts with `__`, the prefix of Kafka's internal topics.
        case internalPrefix
        /// The name contains both `.` and `_`, which Kafka treats as the same character in metric names, so it
        /// may collide with a sibling topic (`a.b_c` vs `a_b.c`).
        case mixesDotAndUnderscore

        /// The rule in words, for a log line such as `topic 'a.b_c' contains both '.' and '_'…`.
        public var description: String {
            switch self {
            case .internalPrefix:
                "starts with '__', the prefix of Kafka's internal topics"
            case .mixesDotAndUnderscore:
                "contains both '.' and '_', which Kafka treats alike, so it may collide with another topic"
            }
        }
    }

    /// The longest topic name Kafka accepts, in characters.
    public static let maximumLength = 249

    /// What NestJS appends to a pattern to name its reply topic.
    public static let replySuffix = ".reply"

    /// The longest pattern whose reply topic `<pattern>.reply` is still a legal topic name (243).
    public static let maximumLengthWithReplyTopic = maximumLength - replySuffix.utf8.count

    /// Whether a byte is one of the characters Kafka allows in a topic name: `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`.
    public static func isLegal(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"):
            true
        default:
            false
        }
    }

    /// Checks that a name is a legal Kafka topic name.
    ///
    /// - Parameters:
    ///   - name: The topic name (for a request topic: the route string).
    ///   - derivingReplyTopic: Whether `<name>.reply` must be legal too, which limits the name to
    ///     ``maximumLengthWithReplyTopic`` characters. Pass `true` for patterns a NestJS-style client calls.
    /// - Returns: The warnings that apply to the name (empty for a clean name); log them, they do not stop anything.
    /// - Throws: ``CourierError`` with code ``CourierError/Code/unprocessable`` naming the broken rule (and the
    ///   offending character) and quoting the name.
    @discardableResult
    public static func validate(_ name: String, derivingReplyTopic: Bool = false) throws -> [Warning] {
        try check(name, derivingReplyTopic: derivingReplyTopic)
        return warnings(for: name)
    }

    /// ``validate(_:derivingReplyTopic:)`` without the warnings, for the topic of every message produced.
    static func check(_ name: String, derivingReplyTopic: Bool = false) throws {
        guard !name.isEmpty else {
            throw CourierError(.unprocessable, "invalid Kafka topic name '': a topic name cannot be empty")
        }
        try checkCharacters(of: name, in: name)
        // Every legal character is one ASCII byte, so from here on the UTF-8 count is the character count.
        let length = name.utf8.count
        if length > maximumLength {
            throw CourierError(
                .unprocessable,
                "invalid Kafka topic name '\(name)': it has \(length) characters, "
                    + "more than Kafka's limit of \(maximumLength)"
            )
        }
        if name == "." || name == ".." {
            throw CourierError(.unprocessable, "invalid Kafka topic name '\(name)': Kafka reserves '.' and '..'")
        }
        if derivingReplyTopic && length > maximumLengthWithReplyTopic {
            throw CourierError(
                .unprocessable,
                "invalid Kafka topic name '\(name)': it has \(length) characters, so its reply topic "
                    + "'<name>\(replySuffix)' would exceed Kafka's limit of \(maximumLength); "
                    + "use at most \(maximumLengthWithReplyTopic)"
            )
        }
    }

    /// The warnings that apply to a name, without checking that it is legal.
    public static func warnings(for name: String) -> [Warning] {
        var result: [Warning] = []
        if name.utf8.starts(with: "__".utf8) { result.append(.internalPrefix) }
        if name.utf8.contains(UInt8(ascii: ".")) && name.utf8.contains(UInt8(ascii: "_")) {
            result.append(.mixesDotAndUnderscore)
        }
        return result
    }

    /// The reply topic NestJS derives for a pattern: `<pattern>.reply`.
    ///
    /// - Throws: ``CourierError`` with code ``CourierError/Code/unprocessable`` when the pattern is not a legal topic
    ///   name or is too long to have a reply topic.
    public static func replyTopic(for pattern: String) throws -> String {
        try validate(pattern, derivingReplyTopic: true)
        return pattern + replySuffix
    }

    /// What a consumer subscribes to for a route: the topic itself for an exact route, or a librdkafka regular
    /// expression (a subscription starting with `^`) for a wildcard route.
    ///
    /// A wildcard segment `*` becomes `[^.]+` (one segment), a final `**` becomes `.+` (one or more segments), and
    /// literal segments are copied with `.` escaped; the expression is anchored at both ends, so `orders.*` becomes
    /// `^orders\.[^.]+$`. Literal segments must use legal topic characters.
    ///
    /// A regex subscription sees every topic on the cluster, including reply topics (`orders.*` matches
    /// `orders.reply`) and, for `**`, internal ones; the consumer should still route each record by its topic with
    /// ``RoutePattern/matches(_:)``.
    ///
    /// The reply topic length is not checked here: the worker replies to whatever topic the request names.
    /// Check it with ``validate(_:derivingReplyTopic:)`` where a caller derives `<pattern>.reply`.
    ///
    /// - Throws: ``CourierError`` with code ``CourierError/Code/unprocessable`` when an exact route is not a legal
    ///   topic name, a literal segment holds an illegal character, or no topic short enough could ever match.
    public static func subscription(for route: RoutePattern) throws -> String {
        guard route.isWildcard else {
            try validate(route.text)
            return route.text
        }
        // The same segment rules as RoutePattern: `*` and `**` only as whole segments, `**` only last (RoutePattern
        // has already rejected it anywhere else).
        let segments = route.text.split(separator: ".", omittingEmptySubsequences: false)
        var regex = "^"
        // The shortest topic the expression can match: every wildcard stands for at least one character.
        var shortestMatch = 0
        for (index, segment) in segments.enumerated() {
            if index > 0 {
                regex += "\\."
                shortestMatch += 1
            }
            switch segment {
            case "*":
                regex += "[^.]+"
                shortestMatch += 1
            case "**":
                regex += ".+"
                shortestMatch += 1
            default:
                try checkCharacters(of: segment, in: route.text)
                // Legal characters are letters, digits, `_`, `-` and `.`; only `.` is special in a regex, and a
                // segment cannot contain it (it is the separator), so the segment is copied as is.
                regex += segment
                shortestMatch += segment.utf8.count
            }
        }
        if shortestMatch > maximumLength {
            throw CourierError(
                .unprocessable,
                "invalid Kafka topic pattern '\(route.text)': every matching topic would have at least "
                    + "\(shortestMatch) characters, more than Kafka's limit of \(maximumLength)"
            )
        }
        return regex + "$"
    }

    /// Throws on the first character of `text` that Kafka does not allow, quoting `name` (the whole name, of which
    /// `text` may be a part).
    private static func checkCharacters(of text: Substring, in name: String) throws {
        for scalar in text.unicodeScalars where !(scalar.isASCII && isLegal(UInt8(scalar.value))) {
            throw CourierError(
                .unprocessable,
                "invalid Kafka topic name '\(name)': character \(describe(scalar)) is not allowed "
                    + "(only A-Z, a-z, 0-9, '.', '_' and '-')"
            )
        }
    }

    private static func checkCharacters(of text: String, in name: String) throws {
        // Every message's topic is checked: scan its contiguous bytes (every legal character is one ASCII byte;
        // iterating a substring's UTF-8 view instead was 2 % of an emitting Kafka client's CPU), and look at scalars
        // only to name the offending character.
        var contiguous = text
        if contiguous.withUTF8({ $0.allSatisfy(isLegal) }) { return }
        try checkCharacters(of: text[...], in: name)
    }

    /// Printable ASCII in quotes, anything else (spaces, controls, non-ASCII) as a code point, so the message shows
    /// what is wrong even when the character itself is invisible.
    private static func describe(_ scalar: Unicode.Scalar) -> String {
        if scalar.value > 0x20 && scalar.value < 0x7F { return "'\(Character(scalar))'" }
        let hex = String(scalar.value, radix: 16, uppercase: true)
        let name = scalar == " " ? " (space)" : ""
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex + name
    }
}
