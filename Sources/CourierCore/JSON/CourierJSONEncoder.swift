//===----------------------------------------------------------------------===//
// This source file is part of the Courier open source project.
// Licensed under Apache License v2.0. See LICENSE for license information.
//===----------------------------------------------------------------------===//

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore

/// A Foundation-free `Encodable` → compact JSON encoder that writes straight into a byte array.
///
/// It produces what Foundation's `JSONEncoder` with default strategies and `outputFormatting =
/// [.withoutEscapingSlashes]` produces, with two differences: object members come in the order the `Encodable`
/// writes them (declaration order for synthesized conformances) rather than Foundation's unspecified order, and
/// ``JSONValue``s nested in a value are written by ``JSONWriter`` (sorted keys, integral doubles keep `.0`, non-finite
/// doubles become `null`). Numbers are formatted as Foundation formats them (`1.0` as `1`, `1e+300`), so they
/// round-trip exactly.
///
/// There is no intermediate tree: containers write their brackets, keys and values as they are used, and a
/// container that is left open is closed when an enclosing container is written to again. That covers every
/// synthesized conformance and every hand-written one that finishes a nested container before going back to its
/// parent. What a forward pass cannot reproduce — writing to a container after a later sibling was written to, a
/// key given twice, or a type Foundation special-cases (`Data`, `URL`, `Decimal`) — throws
/// ``CourierJSONCodingError/unsupported(_:)`` so the caller can use Foundation instead (see ``PayloadCoder``).
///
/// Errors otherwise match Foundation's: non-finite floating-point values throw `EncodingError.invalidValue` with the
/// value's coding path, and a top-level value that encodes nothing throws `EncodingError.invalidValue`.
package struct CourierJSONEncoder: Sendable {
    /// Creates an encoder; it has no options because it implements only Foundation's default strategies.
    package init() {}

    /// Encodes a value as compact UTF-8 JSON.
    ///
    /// - Parameter value: The value to encode; any `Encodable`, including top-level scalars (fragments).
    /// - Returns: The JSON bytes.
    /// - Throws: `EncodingError` as Foundation's encoder would throw it, whatever the value's own `encode(to:)`
    ///   throws, or ``CourierJSONCodingError/unsupported(_:)`` when only Foundation can encode the value.
    package func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        try withOutput(of: value) { Array($0) }
    }

    /// Encodes a value as compact UTF-8 JSON into a buffer of its size (see ``encode(_:)``).
    package func encodeToBuffer<T: Encodable>(_ value: T) throws -> ByteBuffer {
        try withOutput(of: value) { ByteBuffer(bytes: $0) }
    }

    /// Encodes `value` with this thread's spare state, whose arrays keep their capacity from one call to the next
    /// (so a payload costs no allocation of its own besides what `body` makes of the bytes), and hands `body` the
    /// bytes written, which are valid only during the call.
    private func withOutput<T: Encodable, Result>(
        of value: T,
        _ body: (UnsafeBufferPointer<UInt8>) -> Result
    ) throws -> Result {
        let state = EncodingState.Spare.take()
        defer { EncodingState.Spare.giveBack(state) }
        if try !EncodingState.writeKnown(value, to: &state.out, path: { [] }) {
            try state.encodeTopLevel(value)
        }
        return state.out.withUnsafeBufferPointer(body)
    }
}

// MARK: - State

/// Everything one `encode` call shares: the output and the stack of open levels.
///
/// A level is one value being written: the top-level value, a member or element whose value is a nested
/// `Encodable`, or a nested container. Encoders and containers remember their level's index and serial number;
/// using one after its level was closed (its serial no longer matches) is the non-streamable case that fails.
private final class EncodingState {
    /// What a level has written so far.
    enum Content: UInt8 {
        /// Nothing yet; closing it writes `{}`, as Foundation does for a nested value that encodes nothing.
        case empty
        /// An object whose `{` is written.
        case object
        /// An array whose `[` is written.
        case array
        /// A complete scalar or already closed value.
        case value
    }

    /// One open value.
    struct Level {
        /// Unique within the call, so a handle can tell its level from a later one at the same depth.
        var serial: UInt32
        var content: Content
        /// Members or elements written, for commas and `UnkeyedEncodingContainer.count`.
        var count: Int
        /// Where this object's keys start in `keySpans`.
        var keysStart: Int
        /// The keys of a large object, hashed so that duplicate checks stay linear overall.
        var keySet: Set<String>?
        /// How the level is reached from its parent; `nil` for the top level.
        var step: JSONPathStep?
    }

    /// Objects with more keys than this switch from a linear duplicate scan to `keySet`.
    static let linearKeyLimit = 12

    // The state belongs to one `encode` call on one thread and no access to a property overlaps another access to
    // it, so the runtime's exclusivity checks, which cost a fifth of the encoding time, are turned off.
    @exclusivity(unchecked) var out: [UInt8] = []
    @exclusivity(unchecked) var levels: [Level] = []
    /// Where the keys of all open objects were written in `out`, innermost last, to detect a key written twice by
    /// comparing bytes: equal keys are escaped identically, and no strings need keeping.
    @exclusivity(unchecked) var keySpans: [Range<Int>] = []
    /// Set once the output cannot be trusted any more; every later operation throws it.
    @exclusivity(unchecked) var failure: CourierJSONCodingError?
    @exclusivity(unchecked) private var lastSerial: UInt32 = 0
    /// The first serial of the current `encode` call. A state is reused by later calls on its thread, so a handle
    /// kept from an earlier call (against the `Encoder` contract) holds a smaller serial, and must neither write
    /// nor fail the current call.
    @exclusivity(unchecked) private var firstSerial: UInt32 = 1

    init() {
        out.reserveCapacity(128)
    }

    /// Output capacity past which a state is not kept for reuse, so a thread does not hold on to the memory of one
    /// large payload.
    static let keptCapacity = 64 * 1024

    /// Clears the state for the next `encode` call on its thread; false when it must not be reused.
    func reset() -> Bool {
        guard out.capacity <= Self.keptCapacity, lastSerial < UInt32.max / 2 else { return false }
        out.removeAll(keepingCapacity: true)
        levels.removeAll(keepingCapacity: true)
        keySpans.removeAll(keepingCapacity: true)
        failure = nil
        firstSerial = lastSerial &+ 1
        return true
    }

    /// One spare state per thread. An `encode` call runs on one thread without suspending, so the state it takes
    /// is its own until it gives it back; a nested call (a value's `encode(to:)` encoding something else with
    /// Courier's encoder) finds no spare and makes its own.
    enum Spare {
        private static let key: pthread_key_t = {
            var key = pthread_key_t()
            let created = pthread_key_create(&key) { pointer in
                // The thread's spare, released as the thread exits.
                #if canImport(Darwin)
                Unmanaged<EncodingState>.fromOpaque(pointer).release()
                #else
                if let pointer { Unmanaged<EncodingState>.fromOpaque(pointer).release() }
                #endif
            }
            precondition(created == 0, "pthread_key_create failed: \(created)")
            return key
        }()

        static func take() -> EncodingState {
            guard let spare = pthread_getspecific(key) else { return EncodingState() }
            pthread_setspecific(key, nil)
            return Unmanaged<EncodingState>.fromOpaque(spare).takeRetainedValue()
        }

        static func giveBack(_ state: EncodingState) {
            guard state.reset(), pthread_getspecific(key) == nil else { return }
            pthread_setspecific(key, Unmanaged.passRetained(state).toOpaque())
        }
    }

    // MARK: Levels

    /// The coding path of the value at `level`, built from the steps of the levels leading to it.
    func codingPath(upTo level: Int) -> [any CodingKey] {
        let last = min(level, levels.count - 1)
        guard last >= 1 else { return [] }
        var path: [any CodingKey] = []
        path.reserveCapacity(last)
        for index in 1...last {
            if let step = levels[index].step {
                path.append(step.codingKey)
            }
        }
        return path
    }

    /// The coding path of a member or element of the value at `level`.
    func codingPath(upTo level: Int, appending step: JSONPathStep) -> [any CodingKey] {
        codingPath(upTo: level) + [step.codingKey]
    }

    /// Records that the output cannot be trusted and returns the error to throw.
    @discardableResult
    func fail(_ reason: String) -> CourierJSONCodingError {
        if let failure { return failure }
        let error = CourierJSONCodingError.unsupported(reason)
        failure = error
        return error
    }

    /// Opens a level for a new value and returns its serial.
    @discardableResult
    func push(_ content: Content, step: JSONPathStep?) -> UInt32 {
        if levels.capacity == 0 {
            // One allocation for the usual depth instead of growing one level at a time.
            levels.reserveCapacity(8)
            keySpans.reserveCapacity(16)
        }
        lastSerial &+= 1
        levels.append(Level(serial: lastSerial, content: content, count: 0, keysStart: keySpans.count, step: step))
        return lastSerial
    }

    /// Makes `level` the innermost open level, closing the levels above it: their writers are done with them
    /// because the code that owns them has moved on to an enclosing container.
    @inline(__always)
    func enter(_ level: Int, _ serial: UInt32) throws {
        if let failure { throw failure }
        if level == levels.count - 1 && levels[level].serial == serial { return }
        try enterSlowly(level, serial)
    }

    private func enterSlowly(_ level: Int, _ serial: UInt32) throws {
        // Serial 0 marks a container whose opening failed in this call (see the containers).
        guard serial == 0 || serial >= firstSerial else {
            throw CourierJSONCodingError.unsupported("an encoder was used after its encode call returned")
        }
        guard level < levels.count && levels[level].serial == serial else {
            throw fail("a container was written to after a container opened later than it")
        }
        while levels.count - 1 > level {
            closeInnermost()
        }
    }

    /// Closes the innermost level.
    func closeInnermost() {
        let level = levels.removeLast()
        switch level.content {
        case .empty: out.append(contentsOf: [JSONByte.openBrace, JSONByte.closeBrace])
        case .object:
            out.append(JSONByte.closeBrace)
            keySpans.removeSubrange(level.keysStart...)
        case .array: out.append(JSONByte.closeBracket)
        case .value: break
        }
    }

    /// Opens an object or array at `level`, or reuses the one already open there, as Foundation returns the same
    /// container when asked twice. Non-throwing because the `Encoder` methods that call it cannot throw: problems
    /// are recorded in `failure` and surface at the container's first use.
    func open(_ kind: Content, at level: Int, _ serial: UInt32) {
        do {
            try enter(level, serial)
        } catch {
            return
        }
        switch levels[level].content {
        case .empty:
            levels[level].content = kind
            out.append(kind == .object ? JSONByte.openBrace : JSONByte.openBracket)
        case kind:
            break
        default:
            fail("a second container was requested for a value that already has different content")
        }
    }

    // MARK: Members and elements

    /// Writes the separator and quoted key for a member of the object at `level`.
    func beginMember(_ key: String, at level: Int, _ serial: UInt32) throws {
        try enter(level, serial)
        if levels[level].count > 0 {
            out.append(JSONByte.comma)
        }
        let start = out.count
        JSONWriter.appendString(key, to: &out)
        try register(start..<out.count, at: level)
        levels[level].count += 1
        out.append(JSONByte.colon)
    }

    /// Records the key just written at `span` for the object at `level`, failing on a repeat: Foundation keeps
    /// only the last value (or merges nested containers), which cannot be done once the first is written.
    private func register(_ span: Range<Int>, at level: Int) throws {
        let first = levels[level].keysStart
        if levels[level].keySet != nil {
            let key = text(of: span)
            guard levels[level].keySet!.insert(key).inserted else { throw fail("key \(key) was encoded twice") }
            return
        }
        let repeated = out.withUnsafeBufferPointer { out in
            let key = UnsafeBufferPointer(rebasing: out[span])
            for index in first..<keySpans.count where keySpans[index].count == span.count {
                if UnsafeBufferPointer(rebasing: out[keySpans[index]]).elementsEqual(key) { return true }
            }
            return false
        }
        if repeated {
            throw fail("key \(text(of: span)) was encoded twice")
        }
        keySpans.append(span)
        if keySpans.count - first > Self.linearKeyLimit {
            levels[level].keySet = Set(keySpans[first...].map { text(of: $0) })
        }
    }

    /// The written form of a key, quotes and escapes included; unique per key, which is all sets and messages need.
    private func text(of span: Range<Int>) -> String {
        String(decoding: out[span], as: UTF8.self)
    }

    /// Writes the separator for an element of the array at `level` and returns the element's position.
    func beginElement(at level: Int, _ serial: UInt32) throws -> Int {
        try enter(level, serial)
        let index = levels[level].count
        if index > 0 {
            out.append(JSONByte.comma)
        }
        levels[level].count = index + 1
        return index
    }

    /// Claims `level` for a single value; a level holds one value, so a second one (or a value after a container)
    /// is something Foundation would reject or merge.
    func beginSingleValue(at level: Int, _ serial: UInt32) throws {
        try enter(level, serial)
        guard levels[level].content == .empty else {
            throw fail("a second value was encoded through a single value container")
        }
        levels[level].content = .value
    }

    // MARK: Values

    /// Writes the whole value at level 0 and closes everything, as `JSONEncoder.encode(_:)` would.
    func encodeTopLevel<T: Encodable>(_ value: T) throws {
        guard !FoundationSpecialTypes.contains(T.self) else { throw FoundationSpecialTypes.unsupported(T.self) }
        let serial = push(.empty, step: nil)
        try value.encode(to: EncoderHandle(state: self, level: 0, serial: serial))
        // The value's own code may have caught an error from us and carried on; the output is then unreliable.
        if let failure { throw failure }
        guard !levels.isEmpty, levels[0].serial == serial else {
            throw fail("the top-level encoder was closed early")
        }
        while levels.count > 1 {
            closeInnermost()
        }
        guard levels[0].content != .empty else {
            throw EncodingError.invalidValue(
                value,
                EncodingError.Context(
                    codingPath: [],
                    debugDescription: "Top-level \(T.self) did not encode any values."
                )
            )
        }
        closeInnermost()
    }

    /// Writes a value that is a member or element (its key or separator already written) at a new level.
    func encodeNested<T: Encodable>(_ value: T, step: JSONPathStep) throws {
        let parent = levels.count - 1
        if try Self.writeKnown(value, to: &out, path: { self.codingPath(upTo: parent, appending: step) }) {
            return
        }
        guard !FoundationSpecialTypes.contains(T.self) else {
            throw fail("\(T.self) is coded specially by Foundation")
        }
        let serial = push(.empty, step: step)
        let level = parent + 1
        do {
            try value.encode(to: EncoderHandle(state: self, level: level, serial: serial))
        } catch {
            // Part of the value may be written. If the caller catches this and goes on, the output is wrong, so
            // make the rest of this call fail over to Foundation, which can drop the partial value.
            if failure == nil {
                failure = .unsupported("an error thrown while encoding a member was caught and encoding went on")
            }
            throw error
        }
        if let failure { throw failure }
        guard level < levels.count && levels[level].serial == serial else {
            throw fail("a nested value's encoder was closed before the value finished")
        }
        while levels.count > level {
            closeInnermost()
        }
    }

    /// Writes a value through a single value container at `level`: Foundation encodes it with the same encoder,
    /// so a keyed container the value asks for is this level's, and a value that writes nothing becomes `{}`.
    func encodeSingle<T: Encodable>(_ value: T, at level: Int, _ serial: UInt32) throws {
        try enter(level, serial)
        guard levels[level].content == .empty else {
            throw fail("a second value was encoded through a single value container")
        }
        if try Self.writeKnown(value, to: &out, path: { self.codingPath(upTo: level) }) {
            levels[level].content = .value
            return
        }
        guard !FoundationSpecialTypes.contains(T.self) else {
            throw fail("\(T.self) is coded specially by Foundation")
        }
        do {
            try value.encode(to: EncoderHandle(state: self, level: level, serial: serial))
        } catch {
            if failure == nil {
                failure = .unsupported("an error thrown while encoding a value was caught and encoding went on")
            }
            throw error
        }
        try enter(level, serial)
        if levels[level].content == .empty {
            out.append(contentsOf: [JSONByte.openBrace, JSONByte.closeBrace])
            levels[level].content = .value
        }
    }

    /// Writes the types whose JSON form is fixed without calling their `encode(to:)`, and returns whether `value`
    /// was one of them. Checks are metatype comparisons, so values of other types pay a few nanoseconds.
    @inline(__always)
    static func writeKnown<T: Encodable>(_ value: T, to out: inout [UInt8], path: () -> [any CodingKey]) throws -> Bool
    {
        if T.self == Int.self {
            JSONNumbers.appendInteger(unsafeBitCast(value, to: Int.self), to: &out)
        } else if T.self == String.self {
            JSONWriter.appendString(unsafeBitCast(value, to: String.self), to: &out)
        } else if T.self == Double.self {
            let double = unsafeBitCast(value, to: Double.self)
            try JSONNumbers.checkFinite(double, path: path())
            JSONNumbers.appendFloatingPoint(double, to: &out)
        } else if T.self == Bool.self {
            JSONNumbers.appendBool(unsafeBitCast(value, to: Bool.self), to: &out)
        } else if T.self == [Int].self {
            JSONNumbers.appendIntegers(unsafeBitCast(value, to: [Int].self), to: &out)
        } else if T.self == [String].self {
            appendStrings(unsafeBitCast(value, to: [String].self), to: &out)
        } else if T.self == Int64.self {
            JSONNumbers.appendInteger(unsafeBitCast(value, to: Int64.self), to: &out)
        } else if T.self == JSONValue.self {
            JSONWriter.append(unsafeBitCast(value, to: JSONValue.self), to: &out)
        } else {
            return false
        }
        return true
    }

    private static func appendStrings(_ strings: [String], to out: inout [UInt8]) {
        out.append(JSONByte.openBracket)
        for index in strings.indices {
            if index > 0 {
                out.append(JSONByte.comma)
            }
            JSONWriter.appendString(strings[index], to: &out)
        }
        out.append(JSONByte.closeBracket)
    }
}

// MARK: - Number formatting

/// Number and literal formatting shared by the containers.
enum JSONNumbers {
    /// Appends `true` or `false`.
    @inline(__always)
    static func appendBool(_ value: Bool, to out: inout [UInt8]) {
        if value {
            out.append(contentsOf: [JSONByte.lowerT, JSONByte.lowerR, JSONByte.lowerU, JSONByte.lowerE])
        } else {
            out.append(contentsOf: [JSONByte.lowerF, 0x61, 0x6C, 0x73, JSONByte.lowerE])
        }
    }

    /// Appends `null`.
    @inline(__always)
    static func appendNull(to out: inout [UInt8]) {
        out.append(contentsOf: [JSONByte.lowerN, JSONByte.lowerU, 0x6C, 0x6C])
    }

    /// Appends an integer's decimal digits without building a `String`.
    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    static func appendInteger<T: FixedWidthInteger>(_ value: T, to out: inout [UInt8]) {
        guard T.bitWidth <= 64 else {
            out.append(contentsOf: value.description.utf8)
            return
        }
        if value < 0 {
            out.append(JSONByte.minus)
        }
        var magnitude = UInt64(truncatingIfNeeded: value.magnitude)
        // 20 digits hold UInt64.max; digits are produced last first, so fill the buffer from its end.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var start = 20
            repeat {
                let (quotient, remainder) = magnitude.quotientAndRemainder(dividingBy: 10)
                start -= 1
                digits[start] = JSONByte.zero &+ UInt8(truncatingIfNeeded: remainder)
                magnitude = quotient
            } while magnitude != 0
            out.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }

    /// Appends an array of `Int` without going through an unkeyed container.
    static func appendIntegers(_ values: [Int], to out: inout [UInt8]) {
        out.append(JSONByte.openBracket)
        for index in values.indices {
            if index > 0 {
                out.append(JSONByte.comma)
            }
            appendInteger(values[index], to: &out)
        }
        out.append(JSONByte.closeBracket)
    }

    /// Appends a number as Foundation writes it: Swift's shortest round-tripping form (`description`) without a
    /// trailing `.0`, so `1.0` is `1` and `1e300` is `1e+300`. The caller has checked it is finite.
    static func appendFloatingPoint<F: BinaryFloatingPoint & CustomStringConvertible>(_ value: F, to out: inout [UInt8])
    {
        var text = value.description
        text.withUTF8 { utf8 in
            var count = utf8.count
            if count >= 2 && utf8[count - 2] == JSONByte.dot && utf8[count - 1] == JSONByte.zero {
                count -= 2
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: utf8[..<count]))
        }
    }

    /// Throws Foundation's error for a non-finite value, before anything about the value is written.
    ///
    /// - Throws: `EncodingError.invalidValue` for NaN and infinities, at the coding path `path`, as Foundation's
    ///   default `nonConformingFloatEncodingStrategy` does.
    @inline(__always)
    static func checkFinite<F: BinaryFloatingPoint>(_ value: F, path: @autoclosure () -> [any CodingKey]) throws {
        guard value.isFinite else {
            throw EncodingError.invalidValue(
                value,
                EncodingError.Context(
                    codingPath: path(),
                    debugDescription: "Unable to encode \(F.self).\(value) directly in JSON."
                )
            )
        }
    }
}

// MARK: - Encoder and single value container

/// The `Encoder` handed to `encode(to:)`: a level of the shared state. It is also the level's single value
/// container, as in Foundation. Three words, so passing it as `any Encoder` does not allocate.
private struct EncoderHandle: Encoder, SingleValueEncodingContainer {
    let state: EncodingState
    let level: Int
    let serial: UInt32

    var codingPath: [any CodingKey] { state.codingPath(upTo: level) }

    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        state.open(.object, at: level, serial)
        return KeyedEncodingContainer(KeyedContainer<Key>(state: state, level: level, serial: serial))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        state.open(.array, at: level, serial)
        return UnkeyedContainer(state: state, level: level, serial: serial)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        self
    }

    mutating func encodeNil() throws {
        try state.beginSingleValue(at: level, serial)
        JSONNumbers.appendNull(to: &state.out)
    }

    mutating func encode(_ value: Bool) throws {
        try state.beginSingleValue(at: level, serial)
        JSONNumbers.appendBool(value, to: &state.out)
    }

    mutating func encode(_ value: String) throws {
        try state.beginSingleValue(at: level, serial)
        JSONWriter.appendString(value, to: &state.out)
    }

    mutating func encode(_ value: Double) throws {
        try JSONNumbers.checkFinite(value, path: codingPath)
        try state.beginSingleValue(at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    mutating func encode(_ value: Float) throws {
        try JSONNumbers.checkFinite(value, path: codingPath)
        try state.beginSingleValue(at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func encodeInteger<T: FixedWidthInteger>(_ value: T) throws {
        try state.beginSingleValue(at: level, serial)
        JSONNumbers.appendInteger(value, to: &state.out)
    }

    mutating func encode(_ value: Int) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int8) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int16) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int32) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int64) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int128) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt8) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt16) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt32) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt64) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt128) throws { try encodeInteger(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try state.encodeSingle(value, at: level, serial)
    }
}

// MARK: - Keyed container

/// Writes the members of the object open at its level.
private struct KeyedContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: EncodingState
    let level: Int
    let serial: UInt32

    var codingPath: [any CodingKey] { state.codingPath(upTo: level) }

    private func path(_ key: Key) -> [any CodingKey] {
        state.codingPath(upTo: level, appending: .key(key))
    }

    mutating func encodeNil(forKey key: Key) throws {
        try state.beginMember(key.stringValue, at: level, serial)
        JSONNumbers.appendNull(to: &state.out)
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try state.beginMember(key.stringValue, at: level, serial)
        JSONNumbers.appendBool(value, to: &state.out)
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        try state.beginMember(key.stringValue, at: level, serial)
        JSONWriter.appendString(value, to: &state.out)
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        // Checked before the key is written, so a caller that catches the error leaves no dangling key.
        try JSONNumbers.checkFinite(value, path: path(key))
        try state.beginMember(key.stringValue, at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    mutating func encode(_ value: Float, forKey key: Key) throws {
        try JSONNumbers.checkFinite(value, path: path(key))
        try state.beginMember(key.stringValue, at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func encodeInteger<T: FixedWidthInteger>(_ value: T, forKey key: Key) throws {
        try state.beginMember(key.stringValue, at: level, serial)
        JSONNumbers.appendInteger(value, to: &state.out)
    }

    mutating func encode(_ value: Int, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: Int128, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { try encodeInteger(value, forKey: key) }
    mutating func encode(_ value: UInt128, forKey key: Key) throws { try encodeInteger(value, forKey: key) }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        if T.self == Double.self {
            // Same reason as `encode(_: Double, forKey:)`: fail before the key is written.
            try JSONNumbers.checkFinite(unsafeBitCast(value, to: Double.self), path: path(key))
        }
        try state.beginMember(key.stringValue, at: level, serial)
        try state.encodeNested(value, step: .key(key))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type,
        forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let serial = openNested(.object, forKey: key)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(state: state, level: level + 1, serial: serial))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let serial = openNested(.array, forKey: key)
        return UnkeyedContainer(state: state, level: level + 1, serial: serial)
    }

    mutating func superEncoder() -> any Encoder {
        EncoderHandle(state: state, level: level + 1, serial: openNested(.empty, forKey: JSONSuperKey()))
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        EncoderHandle(state: state, level: level + 1, serial: openNested(.empty, forKey: key))
    }

    /// Writes the key, opens a level for its value and returns the level's serial; a failure (recorded in the
    /// state) yields serial 0, which no level has, so the container's first use throws.
    private func openNested(_ content: EncodingState.Content, forKey key: some CodingKey) -> UInt32 {
        do {
            try state.beginMember(key.stringValue, at: level, serial)
        } catch {
            return 0
        }
        switch content {
        case .object: state.out.append(JSONByte.openBrace)
        case .array: state.out.append(JSONByte.openBracket)
        case .empty, .value: break
        }
        return state.push(content, step: .key(key))
    }
}

// MARK: - Unkeyed container

/// Writes the elements of the array open at its level. Three words, so returning it as
/// `any UnkeyedEncodingContainer` does not allocate.
private struct UnkeyedContainer: UnkeyedEncodingContainer {
    let state: EncodingState
    let level: Int
    let serial: UInt32

    var codingPath: [any CodingKey] { state.codingPath(upTo: level) }

    var count: Int {
        level < state.levels.count && state.levels[level].serial == serial ? state.levels[level].count : 0
    }

    private func path(_ index: Int) -> [any CodingKey] {
        state.codingPath(upTo: level, appending: .index(index))
    }

    mutating func encodeNil() throws {
        _ = try state.beginElement(at: level, serial)
        JSONNumbers.appendNull(to: &state.out)
    }

    mutating func encode(_ value: Bool) throws {
        _ = try state.beginElement(at: level, serial)
        JSONNumbers.appendBool(value, to: &state.out)
    }

    mutating func encode(_ value: String) throws {
        _ = try state.beginElement(at: level, serial)
        JSONWriter.appendString(value, to: &state.out)
    }

    mutating func encode(_ value: Double) throws {
        try JSONNumbers.checkFinite(value, path: path(count))
        _ = try state.beginElement(at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    mutating func encode(_ value: Float) throws {
        try JSONNumbers.checkFinite(value, path: path(count))
        _ = try state.beginElement(at: level, serial)
        JSONNumbers.appendFloatingPoint(value, to: &state.out)
    }

    // Inlined so that each integer type gets its own specialized, non-generic copy.
    @inline(__always)
    private func encodeInteger<T: FixedWidthInteger>(_ value: T) throws {
        _ = try state.beginElement(at: level, serial)
        JSONNumbers.appendInteger(value, to: &state.out)
    }

    mutating func encode(_ value: Int) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int8) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int16) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int32) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int64) throws { try encodeInteger(value) }
    mutating func encode(_ value: Int128) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt8) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt16) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt32) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt64) throws { try encodeInteger(value) }
    mutating func encode(_ value: UInt128) throws { try encodeInteger(value) }

    mutating func encode<T: Encodable>(_ value: T) throws {
        if T.self == Double.self {
            try JSONNumbers.checkFinite(unsafeBitCast(value, to: Double.self), path: path(count))
        }
        let index = try state.beginElement(at: level, serial)
        try state.encodeNested(value, step: .index(index))
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let serial = openNested(.object)
        return KeyedEncodingContainer(KeyedContainer<NestedKey>(state: state, level: level + 1, serial: serial))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        UnkeyedContainer(state: state, level: level + 1, serial: openNested(.array))
    }

    mutating func superEncoder() -> any Encoder {
        EncoderHandle(state: state, level: level + 1, serial: openNested(.empty))
    }

    /// As in the keyed container: serial 0 marks a container whose opening failed.
    private func openNested(_ content: EncodingState.Content) -> UInt32 {
        let index: Int
        do {
            index = try state.beginElement(at: level, serial)
        } catch {
            return 0
        }
        switch content {
        case .object: state.out.append(JSONByte.openBrace)
        case .array: state.out.append(JSONByte.openBracket)
        case .empty, .value: break
        }
        return state.push(content, step: .index(index))
    }
}
