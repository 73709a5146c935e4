// The plugin runtime's control-plane messages, encoded with the project's small protobuf codec
// (ProtoWire): go-plugin's `grpc.health.v1`, `plugin.GRPCController`, `plugin.GRPCStdio` and
// `plugin.GRPCBroker` messages, and connect-plugin-go's `connectplugin.v1` / `connectplugin.health.v1`
// ones (field numbers in plugin-wire.md §1.6 and §2.11). Decoding never traps: bad bytes throw
// `ProtoWireError`; unknown fields are skipped as proto3 requires.

import ConnectPluginRPC

/// A message of ours on the wire.
public protocol ControlMessage: Sendable, Equatable {
    init()
    func encode(into w: inout ProtoWriter)
    /// Reads one field; returns false when the field is not one of this message's (it is skipped).
    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool
}

extension ControlMessage {
    public func serialized() -> [UInt8] {
        var w = ProtoWriter()
        encode(into: &w)
        return w.bytes
    }

    public init(serialized bytes: [UInt8]) throws {
        self.init()
        var r = ProtoReader(bytes)
        while let (field, wireType) = try r.next() {
            if try !read(field: field, wireType: wireType, from: &r) { try r.skip(wireType: wireType) }
        }
    }
}

// MARK: - Field helpers

extension ProtoReader {
    mutating func expect(_ wireType: Int, _ want: Int, _ field: Int) throws {
        if wireType != want {
            throw ProtoWireError(description: "field \(field) has wire type \(wireType), expected \(want)")
        }
    }

    mutating func int32Value(_ wireType: Int, _ field: Int) throws -> Int32 {
        try expect(wireType, 0, field)
        return Int32(truncatingIfNeeded: try varint())
    }

    mutating func uint32Value(_ wireType: Int, _ field: Int) throws -> UInt32 {
        try expect(wireType, 0, field)
        return UInt32(truncatingIfNeeded: try varint())
    }

    mutating func boolValue(_ wireType: Int, _ field: Int) throws -> Bool {
        try expect(wireType, 0, field)
        return try varint() != 0
    }

    mutating func stringValue(_ wireType: Int, _ field: Int) throws -> String {
        try expect(wireType, 2, field)
        return try string()
    }

    mutating func bytesValue(_ wireType: Int, _ field: Int) throws -> [UInt8] {
        try expect(wireType, 2, field)
        return try lengthDelimited()
    }

    mutating func messageValue<M: ControlMessage>(_ wireType: Int, _ field: Int, _: M.Type = M.self) throws -> M {
        try M(serialized: try bytesValue(wireType, field))
    }

    /// One `map<string,string>` entry.
    mutating func mapEntry(_ wireType: Int, _ field: Int) throws -> (String, String) {
        let e = try messageValue(wireType, field, StringMapEntry.self)
        return (e.key, e.value)
    }
}

extension ProtoWriter {
    mutating func int32Field(_ field: Int, _ v: Int32) { int64Field(field, Int64(v)) }

    mutating func uint32Field(_ field: Int, _ v: UInt32) {
        if v == 0 { return }
        tag(field, wireType: 0)
        varint(UInt64(v))
    }

    /// A sub-message; written even when empty when `always` (a set message field), else skipped when empty.
    mutating func messageField<M: ControlMessage>(_ field: Int, _ m: M, always: Bool = false) {
        let b = m.serialized()
        if b.isEmpty && !always { return }
        lengthDelimitedField(field, b)
    }

    mutating func mapField(_ field: Int, _ entries: [(String, String)]) {
        for (k, v) in entries { messageField(field, StringMapEntry(key: k, value: v), always: true) }
    }

    mutating func repeatedStringField(_ field: Int, _ values: [String]) {
        for v in values { lengthDelimitedField(field, Array(v.utf8)) }
    }
}

struct StringMapEntry: ControlMessage {
    var key = ""
    var value = ""
    init() {}
    init(key: String, value: String) {
        self.key = key
        self.value = value
    }
    func encode(into w: inout ProtoWriter) {
        w.stringField(1, key)
        w.stringField(2, value)
    }
    mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: key = try r.stringValue(wireType, field)
        case 2: value = try r.stringValue(wireType, field)
        default: return false
        }
        return true
    }
}

// MARK: - go-plugin: grpc.health.v1, plugin.GRPCController, plugin.GRPCStdio, plugin.GRPCBroker

/// `grpc.health.v1.HealthCheckRequest` and `connectplugin.health.v1.HealthCheckRequest`.
public struct HealthCheckRequest: ControlMessage {
    public var service = ""
    public init() {}
    public init(service: String) { self.service = service }
    public func encode(into w: inout ProtoWriter) { w.stringField(1, service) }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        guard field == 1 else { return false }
        service = try r.stringValue(wireType, field)
        return true
    }
}

/// `ServingStatus` of both health services (the same numbers).
public enum ServingStatus: Int32, Sendable {
    case unknown = 0, serving = 1, notServing = 2, serviceUnknown = 3
}

public struct HealthCheckResponse: ControlMessage {
    /// The raw enum value (an unknown number is kept, as proto3 open enums are).
    public var statusValue: Int32 = 0
    public var status: ServingStatus? { ServingStatus(rawValue: statusValue) }
    public init() {}
    public init(status: ServingStatus) { statusValue = status.rawValue }
    public func encode(into w: inout ProtoWriter) { w.int32Field(1, statusValue) }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        guard field == 1 else { return false }
        statusValue = try r.int32Value(wireType, field)
        return true
    }
}

/// `plugin.Empty` and `google.protobuf.Empty`: zero bytes.
public struct EmptyMessage: ControlMessage {
    public init() {}
    public func encode(into w: inout ProtoWriter) {}
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool { false }
}

/// `plugin.StdioData`.
public struct StdioData: ControlMessage {
    public enum Channel: Int32, Sendable { case invalid = 0, stdout = 1, stderr = 2 }
    public var channelValue: Int32 = 0
    public var data: [UInt8] = []
    public var channel: Channel? { Channel(rawValue: channelValue) }
    public init() {}
    public init(channel: Channel, data: [UInt8]) {
        channelValue = channel.rawValue
        self.data = data
    }
    public func encode(into w: inout ProtoWriter) {
        w.int32Field(1, channelValue)
        w.bytesField(2, data)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: channelValue = try r.int32Value(wireType, field)
        case 2: data = try r.bytesValue(wireType, field)
        default: return false
        }
        return true
    }
}

/// `plugin.ConnInfo` (the broker stream's message; `knock` since go-plugin v1.6.0).
public struct ConnInfo: ControlMessage {
    public struct Knock: ControlMessage {
        public var knock = false
        public var ack = false
        public var error = ""
        public init() {}
        public func encode(into w: inout ProtoWriter) {
            w.boolField(1, knock)
            w.boolField(2, ack)
            w.stringField(3, error)
        }
        public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
            switch field {
            case 1: knock = try r.boolValue(wireType, field)
            case 2: ack = try r.boolValue(wireType, field)
            case 3: error = try r.stringValue(wireType, field)
            default: return false
            }
            return true
        }
    }
    public var serviceID: UInt32 = 0
    public var network = ""
    public var address = ""
    public var knock: Knock?
    public init() {}
    public func encode(into w: inout ProtoWriter) {
        w.uint32Field(1, serviceID)
        w.stringField(2, network)
        w.stringField(3, address)
        if let k = knock { w.messageField(4, k, always: true) }
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: serviceID = try r.uint32Value(wireType, field)
        case 2: network = try r.stringValue(wireType, field)
        case 3: address = try r.stringValue(wireType, field)
        case 4: knock = try r.messageValue(wireType, field, Knock.self)
        default: return false
        }
        return true
    }
}

// MARK: - connect-plugin-go: connectplugin.v1

/// `connectplugin.v1.HandshakeRequest` (the fields connectplugin uses; the others are skipped).
public struct HandshakeRequest: ControlMessage {
    public var coreProtocolVersion: Int32 = 0
    public var appProtocolVersion: Int32 = 0
    public var magicCookieKey = ""
    public var magicCookieValue = ""
    public var requestedPlugins: [String] = []
    public var clientMetadata: [(String, String)] = []
    public init() {}
    public static func == (a: Self, b: Self) -> Bool {
        a.coreProtocolVersion == b.coreProtocolVersion && a.appProtocolVersion == b.appProtocolVersion
            && a.magicCookieKey == b.magicCookieKey && a.magicCookieValue == b.magicCookieValue
            && a.requestedPlugins == b.requestedPlugins && pairsEqual(a.clientMetadata, b.clientMetadata)
    }
    public func encode(into w: inout ProtoWriter) {
        w.int32Field(1, coreProtocolVersion)
        w.int32Field(2, appProtocolVersion)
        w.stringField(3, magicCookieKey)
        w.stringField(4, magicCookieValue)
        w.repeatedStringField(5, requestedPlugins)
        w.mapField(6, clientMetadata)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: coreProtocolVersion = try r.int32Value(wireType, field)
        case 2: appProtocolVersion = try r.int32Value(wireType, field)
        case 3: magicCookieKey = try r.stringValue(wireType, field)
        case 4: magicCookieValue = try r.stringValue(wireType, field)
        case 5: requestedPlugins.append(try r.stringValue(wireType, field))
        case 6: clientMetadata.append(try r.mapEntry(wireType, field))
        default: return false
        }
        return true
    }
}

/// `connectplugin.v1.PluginInfo` (name, version, service path).
public struct PluginInfo: ControlMessage {
    public var name = ""
    public var version = ""
    public var servicePath = ""
    public init() {}
    public init(name: String, version: String, servicePath: String) {
        self.name = name
        self.version = version
        self.servicePath = servicePath
    }
    public func encode(into w: inout ProtoWriter) {
        w.stringField(1, name)
        w.stringField(2, version)
        w.stringField(3, servicePath)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: name = try r.stringValue(wireType, field)
        case 2: version = try r.stringValue(wireType, field)
        case 3: servicePath = try r.stringValue(wireType, field)
        default: return false
        }
        return true
    }
}

/// `connectplugin.v1.HandshakeResponse` (the fields connectplugin uses).
public struct HandshakeResponse: ControlMessage {
    public var coreProtocolVersion: Int32 = 0
    public var appProtocolVersion: Int32 = 0
    public var plugins: [PluginInfo] = []
    public var serverMetadata: [(String, String)] = []
    public init() {}
    public static func == (a: Self, b: Self) -> Bool {
        a.coreProtocolVersion == b.coreProtocolVersion && a.appProtocolVersion == b.appProtocolVersion
            && a.plugins == b.plugins && pairsEqual(a.serverMetadata, b.serverMetadata)
    }
    public func encode(into w: inout ProtoWriter) {
        w.int32Field(1, coreProtocolVersion)
        w.int32Field(2, appProtocolVersion)
        for p in plugins { w.messageField(3, p, always: true) }
        w.mapField(4, serverMetadata)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: coreProtocolVersion = try r.int32Value(wireType, field)
        case 2: appProtocolVersion = try r.int32Value(wireType, field)
        case 3: plugins.append(try r.messageValue(wireType, field, PluginInfo.self))
        case 4: serverMetadata.append(try r.mapEntry(wireType, field))
        default: return false
        }
        return true
    }
}

/// The three-state health of connect-plugin-go (`connectplugin.v1.HealthState`).
public enum HealthState: Int32, Sendable {
    case unspecified = 0, healthy = 1, degraded = 2, unhealthy = 3
}

/// `connectplugin.v1.GetHealthResponse` (and `ReportHealthRequest`: the same fields).
public struct GetHealthResponse: ControlMessage {
    public var stateValue: Int32 = 0
    public var reason = ""
    public var unavailableDependencies: [String] = []
    public var state: HealthState? { HealthState(rawValue: stateValue) }
    public init() {}
    public init(state: HealthState, reason: String = "") {
        stateValue = state.rawValue
        self.reason = reason
    }
    public func encode(into w: inout ProtoWriter) {
        w.int32Field(1, stateValue)
        w.stringField(2, reason)
        w.repeatedStringField(3, unavailableDependencies)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: stateValue = try r.int32Value(wireType, field)
        case 2: reason = try r.stringValue(wireType, field)
        case 3: unavailableDependencies.append(try r.stringValue(wireType, field))
        default: return false
        }
        return true
    }
}

/// `connectplugin.v1.ShutdownRequest`.
public struct ShutdownRequest: ControlMessage {
    public var gracePeriodSeconds: Int32 = 0
    public var reason = ""
    public init() {}
    public func encode(into w: inout ProtoWriter) {
        w.int32Field(1, gracePeriodSeconds)
        w.stringField(2, reason)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: gracePeriodSeconds = try r.int32Value(wireType, field)
        case 2: reason = try r.stringValue(wireType, field)
        default: return false
        }
        return true
    }
}

/// `connectplugin.v1.ShutdownResponse` (and `SetRuntimeIdentityResponse`).
public struct ShutdownResponse: ControlMessage {
    public var acknowledged = false
    public init() {}
    public init(acknowledged: Bool) { self.acknowledged = acknowledged }
    public func encode(into w: inout ProtoWriter) { w.boolField(1, acknowledged) }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        guard field == 1 else { return false }
        acknowledged = try r.boolValue(wireType, field)
        return true
    }
}

func pairsEqual(_ a: [(String, String)], _ b: [(String, String)]) -> Bool {
    a.count == b.count && !zip(a, b).contains { $0.0 != $1.0 || $0.1 != $1.1 }
}

/// `connectplugin.v1.GetPluginInfoResponse` (self id, version and metadata; provides/requires are
/// skipped until the service registry exists).
public struct GetPluginInfoResponse: ControlMessage {
    public var selfID = ""
    public var selfVersion = ""
    public var metadata: [(String, String)] = []
    public init() {}
    public static func == (a: Self, b: Self) -> Bool {
        a.selfID == b.selfID && a.selfVersion == b.selfVersion && pairsEqual(a.metadata, b.metadata)
    }
    public func encode(into w: inout ProtoWriter) {
        w.stringField(1, selfID)
        w.stringField(2, selfVersion)
        w.mapField(5, metadata)
    }
    public mutating func read(field: Int, wireType: Int, from r: inout ProtoReader) throws -> Bool {
        switch field {
        case 1: selfID = try r.stringValue(wireType, field)
        case 2: selfVersion = try r.stringValue(wireType, field)
        case 5: metadata.append(try r.mapEntry(wireType, field))
        default: return false
        }
        return true
    }
}
