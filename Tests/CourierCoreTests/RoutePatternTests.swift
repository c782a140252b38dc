//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

import CourierCore
import Testing

@Suite struct RoutePatternTests {
    // MARK: Matching

    @Test(arguments: [
        ("orders.42.created", true),
        ("orders.x.created", true),
        ("orders.created", false),
        ("orders.4.2.created", false),
        ("orders..created", false),
        ("orders.42.created.extra", false),
        ("orders.42.shipped", false),
        ("x.orders.42.created", false),
    ])
    func singleStarMatchesExactlyOneSegment(_ name: String, _ expected: Bool) throws {
        let route = try RoutePattern("orders.*.created")
        #expect(route.isWildcard)
        #expect(route.matches(name) == expected, "orders.*.created vs \(name)")
    }

    @Test(arguments: [
        ("orders.42", true),
        ("orders.", false),
        ("orders", false),
        ("orders.4.2", false),
        ("other.42", false),
    ])
    func trailingSingleStarMatchesOneLastSegment(_ name: String, _ expected: Bool) throws {
        #expect(try RoutePattern("orders.*").matches(name) == expected, "orders.* vs \(name)")
    }

    @Test(arguments: [
        ("audit.log", true),
        ("audit.user.login", true),
        ("audit.a.b.c.d", true),
        ("audit", false),
        ("audit.", false),
        ("auditor.log", false),
        ("x.audit.log", false),
    ])
    func doubleStarMatchesOneOrMoreTrailingSegments(_ name: String, _ expected: Bool) throws {
        let route = try RoutePattern("audit.**")
        #expect(route.isWildcard)
        #expect(route.matches(name) == expected, "audit.** vs \(name)")
    }

    @Test func doubleStarAloneMatchesAnyNonEmptyName() throws {
        let route = try RoutePattern("**")
        #expect(route.matches("a"))
        #expect(route.matches("a.b.c"))
        #expect(!route.matches(""))
    }

    @Test func starsCombineWithDoubleStar() throws {
        let route = try RoutePattern("*.events.**")
        #expect(route.matches("billing.events.paid"))
        #expect(route.matches("billing.events.paid.late"))
        #expect(!route.matches("billing.events"))
        #expect(!route.matches("events.paid"))
        #expect(!route.matches("a.b.events.paid"))
    }

    @Test(arguments: ["a*b", "x.a*b", "*a", "b**", "a.*b.c"])
    func segmentMerelyContainingAStarIsLiteral(_ text: String) throws {
        let route = try RoutePattern(text)
        #expect(!route.isWildcard)
        #expect(route.matches(text))
        #expect(!route.matches(String(text.map { $0 == "*" ? "x" : $0 })))
    }

    @Test func literalPatternMatchesOnlyItself() throws {
        let route = try RoutePattern("math.sum")
        #expect(!route.isWildcard)
        #expect(route.text == "math.sum")
        #expect(route.description == "math.sum")
        #expect(route.matches("math.sum"))
        #expect(!route.matches("math.sum.x"))
        #expect(!route.matches("math"))
        #expect(!route.matches("Math.sum"))
    }

    // MARK: Invalid patterns

    @Test(arguments: ["a.**.b", "**.a", "**.**", "a.**.**"])
    func doubleStarNotLastIsRejected(_ text: String) {
        let error = #expect(throws: CourierError.self) {
            _ = try RoutePattern(text)
        }
        #expect(error?.code == .unprocessable)
        #expect(error?.message.contains("'**' may only be the last segment") == true)
    }

    @Test func emptyPatternIsRejected() {
        let error = #expect(throws: CourierError.self) {
            _ = try RoutePattern("")
        }
        #expect(error?.code == .unprocessable)
    }

    // MARK: RouteTable

    @Test func exactRouteBeatsWildcard() throws {
        for order in [["orders.*", "orders.new"], ["orders.new", "orders.*"]] {
            var table = RouteTable<String>()
            for text in order { try table.insert(text, for: RoutePattern(text)) }
            #expect(table.lookup("orders.new")?.route.text == "orders.new")
            #expect(table.lookup("orders.new")?.value == "orders.new")
            #expect(table.value(for: "orders.new") == "orders.new")
            #expect(table.lookup("orders.old")?.route.text == "orders.*")
        }
    }

    @Test func moreSpecificWildcardBeatsLessSpecific() throws {
        let routes = ["orders.**", "orders.*.created", "orders.*"]
        // Registration order must not matter.
        for permutation in permutations(of: routes) {
            var table = RouteTable<String>()
            for text in permutation { try table.insert("handler \(text)", for: RoutePattern(text)) }
            #expect(table.lookup("orders.42.created")?.route.text == "orders.*.created", "order \(permutation)")
            #expect(table.value(for: "orders.42.created") == "handler orders.*.created")
            #expect(table.lookup("orders.42.shipped")?.route.text == "orders.**", "order \(permutation)")
            #expect(table.lookup("orders.42")?.route.text == "orders.*", "order \(permutation)")
            #expect(table.lookup("orders.1.2.3.created")?.route.text == "orders.**", "order \(permutation)")
            #expect(table.lookup("orders") == nil)
        }
    }

    @Test func literalSegmentBeatsStarFromTheLeft() throws {
        for order in [["a.*.c", "a.b.*"], ["a.b.*", "a.*.c"]] {
            var table = RouteTable<Int>()
            for (index, text) in order.enumerated() { try table.insert(index, for: RoutePattern(text)) }
            // Both match; the one with a literal in the earlier differing segment wins.
            #expect(table.lookup("a.b.c")?.route.text == "a.b.*")
            #expect(table.lookup("a.x.c")?.route.text == "a.*.c")
        }
    }

    @Test func duplicateRegistrationThrows() throws {
        var table = RouteTable<Int>()
        try table.insert(1, for: RoutePattern("math.sum"))
        try table.insert(2, for: RoutePattern("math.*"))
        for text in ["math.sum", "math.*"] {
            let error = #expect(throws: CourierError.self) {
                try table.insert(3, for: RoutePattern(text))
            }
            #expect(error?.code == .unprocessable)
            #expect(error?.message.contains("already registered") == true)
        }
        // The first registrations are untouched.
        #expect(table.value(for: "math.sum") == 1)
        #expect(table.value(for: "math.max") == 2)
    }

    @Test func lookupReturnsTheMatchedRouteAndValue() throws {
        var table = RouteTable<String>()
        #expect(table.isEmpty)
        try table.insert("greet-one", for: RoutePattern("greet.*"))
        try table.insert("greet-rest", for: RoutePattern("greet.**"))
        try table.insert("sum", for: RoutePattern("math.sum"))
        #expect(!table.isEmpty)

        let one = try #require(table.lookup("greet.bob"))
        #expect(one.route == (try RoutePattern("greet.*")))
        #expect(one.value == "greet-one")

        let rest = try #require(table.lookup("greet.bob.smith"))
        #expect(rest.route.text == "greet.**")
        #expect(rest.value == "greet-rest")

        #expect(table.lookup("math.max") == nil)
        #expect(table.value(for: "math.max") == nil)
        #expect(Set(table.patterns.map(\.text)) == ["greet.*", "greet.**", "math.sum"])
    }

    private func permutations(of items: [String]) -> [[String]] {
        guard items.count > 1 else { return [items] }
        var result: [[String]] = []
        for (index, item) in items.enumerated() {
            var rest = items
            rest.remove(at: index)
            result += permutations(of: rest).map { [item] + $0 }
        }
        return result
    }
}
