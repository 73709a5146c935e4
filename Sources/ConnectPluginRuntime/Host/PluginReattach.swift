// Reattach information (go-plugin's ReattachConfig): what a host that started a plugin exports so
// that another host process can connect to the same running plugin, dispense, call and kill it.
// The text form is go-plugin's ReattachConfig as JSON, the shape Terraform's TF_REATTACH_PROVIDERS
// uses for one plugin:
//   {"Protocol":"grpc","ProtocolVersion":1,"Addr":{"Network":"unix","String":"/tmp/plugin123"},"Pid":4242,"Test":false}
// (`Test` is read and written for compatibility; connectplugin does not use it.)

import ConnectPluginRPC

public struct PluginReattach: Sendable, Equatable {
    public var rpcProtocol = "grpc"
    public var appVersion: Int
    public var network: PluginNetwork
    public var address: String
    /// The plugin's process id (0: unknown; kill then only calls Shutdown).
    public var pid: Int32
    public var test = false

    public init(appVersion: Int, network: PluginNetwork, address: String, pid: Int32) {
        self.appVersion = appVersion
        self.network = network
        self.address = address
        self.pid = pid
    }

    /// The JSON text another host passes to `PluginClientConfig(reattach:)`.
    public var text: String {
        let v: JSONValue = .object([
            ("Protocol", .string(rpcProtocol)),
            ("ProtocolVersion", .number(String(appVersion))),
            ("Addr", .object([("Network", .string(network.rawValue)), ("String", .string(address))])),
            ("Pid", .number(String(pid))),
            ("Test", .bool(test)),
        ])
        return String(decoding: JSON.serialize(v), as: UTF8.self)
    }

    /// Parses `text`; the error says what is wrong with it.
    public static func parse(_ text: String) throws -> PluginReattach {
        let bad = { (why: String) in
            ConnectError.local(.invalidArgument, "reattach information \(HandshakeLine.preview(text)) \(why); pass the text a host "
                + "exported (e.g. {\"Protocol\":\"grpc\",\"ProtocolVersion\":1,\"Addr\":{\"Network\":\"unix\",\"String\":\"/tmp/plugin1\"},\"Pid\":42})")
        }
        let v: JSONValue
        do { v = try JSON.parse(Array(text.utf8)) } catch { throw bad("is not JSON (\(error))") }
        guard v.objectValue != nil else { throw bad("is not a JSON object") }
        let proto = v["Protocol"]?.stringValue ?? "grpc"
        if proto != "grpc" { throw bad("names protocol \"\(proto)\"; connectplugin speaks grpc only (not net/rpc)") }
        func int(_ key: String) -> Int? {
            if case .number(let n)? = v[key] { return Int(n) }
            return nil
        }
        guard let version = int("ProtocolVersion"), version > 0 else { throw bad("has no positive ProtocolVersion") }
        guard let addr = v["Addr"], let netName = addr["Network"]?.stringValue, let address = addr["String"]?.stringValue,
              !address.isEmpty else { throw bad("has no Addr with Network and String") }
        guard let network = PluginNetwork(rawValue: netName) else { throw bad("has network \"\(netName)\"; use unix or tcp") }
        let pid = int("Pid") ?? 0
        guard pid >= 0, pid <= Int(Int32.max) else { throw bad("has an invalid Pid") }
        var r = PluginReattach(appVersion: version, network: network, address: address, pid: Int32(pid))
        if case .bool(let t)? = v["Test"] { r.test = t }
        return r
    }
}
