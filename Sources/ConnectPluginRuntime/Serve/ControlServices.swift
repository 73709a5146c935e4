// The services every connectplugin plugin serves beside its own (plugin-wire.md §1.6, §2.2), on the
// plugin's one listener, for gRPC, Connect and gRPC-Web alike:
//   go-plugin:          /grpc.health.v1.Health/Check, Watch
//                       /plugin.GRPCController/Shutdown
//                       /plugin.GRPCStdio/StreamStdio
//                       /plugin.GRPCBroker/StartStream   (accepted and drained; brokering comes later)
//   connect-plugin-go:  /connectplugin.v1.HandshakeService/Handshake
//                       /connectplugin.health.v1.HealthService/Check, Watch
//                       /connectplugin.v1.PluginControl/GetHealth, Shutdown
//                       /connectplugin.v1.PluginIdentity/GetPluginInfo
// Messages are protobuf (our codec); a JSON request gets a clear error.

import ConnectPluginIO
import ConnectPluginRPC

public final class ControlServices: @unchecked Sendable {
    public let handshake: HandshakeConfig
    public let appVersion: Int
    public let plugins: [PluginInfo]
    public let health: PluginHealth
    public let stdio: StdioForwarder
    let onShutdown: @Sendable (String) -> Void
    /// How often a blocked Watch or StreamStdio handler looks whether its call ended.
    static let pollNs: UInt64 = 250_000_000

    /// `onShutdown` runs (on a handler thread) after a Shutdown call was answered, with who asked.
    public init(handshake: HandshakeConfig, appVersion: Int, plugins: [PluginInfo], health: PluginHealth,
                stdio: StdioForwarder, onShutdown: @escaping @Sendable (String) -> Void) {
        self.handshake = handshake
        self.appVersion = appVersion
        self.plugins = plugins
        self.health = health
        self.stdio = stdio
        self.onShutdown = onShutdown
    }

    public static let procedures = [
        "/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch",
        "/plugin.GRPCController/Shutdown", "/plugin.GRPCStdio/StreamStdio", "/plugin.GRPCBroker/StartStream",
        "/connectplugin.v1.HandshakeService/Handshake",
        "/connectplugin.health.v1.HealthService/Check", "/connectplugin.health.v1.HealthService/Watch",
        "/connectplugin.v1.PluginControl/GetHealth", "/connectplugin.v1.PluginControl/Shutdown",
        "/connectplugin.v1.PluginIdentity/GetPluginInfo",
    ]

    public func register(on server: RPCServer) throws {
        for prefix in ["/grpc.health.v1.Health/", "/connectplugin.health.v1.HealthService/"] {
            try server.register(prefix + "Check", noSideEffects: true) { [self] call in
                unary(call, HealthCheckRequest.self) { req in
                    guard let s = health.servingStatus(req.service) else {
                        throw ConnectError(.notFound, "unknown service \"\(req.service)\"; this plugin serves \"\", \"plugin\" and "
                            + plugins.map { "\"\($0.name)\"" }.joined(separator: ", "))
                    }
                    return HealthCheckResponse(status: s)
                }
            }
            try server.register(prefix + "Watch", kind: .serverStream) { [self] call in watch(call) }
        }
        try server.register("/plugin.GRPCController/Shutdown") { [self] call in
            unary(call, EmptyMessage.self) { _ in EmptyMessage() }
            onShutdown("the host called plugin.GRPCController/Shutdown")
        }
        try server.register("/connectplugin.v1.PluginControl/Shutdown") { [self] call in
            var why = "the host called connectplugin.v1.PluginControl/Shutdown"
            unary(call, ShutdownRequest.self) { req in
                if !req.reason.isEmpty { why += " (\(req.reason))" }
                return ShutdownResponse(acknowledged: true)
            }
            onShutdown(why)
        }
        try server.register("/connectplugin.v1.PluginControl/GetHealth", noSideEffects: true) { [self] call in
            unary(call, EmptyMessage.self) { _ in
                let (s, r) = health.current
                return GetHealthResponse(state: s, reason: r)
            }
        }
        try server.register("/connectplugin.v1.PluginIdentity/GetPluginInfo", noSideEffects: true) { [self] call in
            unary(call, EmptyMessage.self) { _ in
                var r = GetPluginInfoResponse()
                r.selfID = plugins.first?.name ?? ""
                r.selfVersion = plugins.first?.version ?? ""
                r.metadata = [("app_protocol_version", String(appVersion)), ("runtime", "connectplugin \(libraryVersion)")]
                return r
            }
        }
        try server.register("/connectplugin.v1.HandshakeService/Handshake") { [self] call in
            unary(call, HandshakeRequest.self) { req in try answerHandshake(req) }
        }
        try server.register("/plugin.GRPCStdio/StreamStdio", kind: .serverStream) { [self] call in streamStdio(call) }
        try server.register("/plugin.GRPCBroker/StartStream", kind: .bidiStream) { call in
            // Accepted so that a host's broker stream does not fail; nothing is brokered yet.
            while (try? call.receive()) != nil {}
            try? call.finish()
        }
    }

    /// connect-plugin-go's handshake rules: cookie and core version are `invalid_argument`, an app
    /// version other than ours is `failed_precondition`.
    func answerHandshake(_ req: HandshakeRequest) throws -> HandshakeResponse {
        if req.magicCookieKey != handshake.cookieKey || req.magicCookieValue != handshake.cookieValue {
            throw ConnectError(.invalidArgument, "magic cookie mismatch: this plugin expects \(handshake.cookieKey)=<its value>; "
                + "check the host's handshake configuration")
        }
        if req.coreProtocolVersion != Int32(HandshakeLine.coreProtocolVersion) {
            throw ConnectError(.invalidArgument, "core protocol version \(req.coreProtocolVersion) is not supported; this plugin speaks \(HandshakeLine.coreProtocolVersion)")
        }
        if Int(req.appProtocolVersion) != appVersion {
            throw ConnectError(.failedPrecondition, "version mismatch: client=\(req.appProtocolVersion), server=\(appVersion)")
        }
        var resp = HandshakeResponse()
        resp.coreProtocolVersion = Int32(HandshakeLine.coreProtocolVersion)
        resp.appProtocolVersion = Int32(truncatingIfNeeded: appVersion)
        let wanted = req.requestedPlugins
        resp.plugins = wanted.isEmpty ? plugins : plugins.filter { wanted.contains($0.name) }
        resp.serverMetadata = [("server_version", libraryVersion), ("runtime", "connectplugin")]
        return resp
    }

    func unary<Req: ControlMessage, Resp: ControlMessage>(_ call: UnaryCall, _: Req.Type, _ body: (Req) throws -> Resp) {
        if call.codec != "proto" {
            try? call.fail(.invalidArgument, "\(call.procedure) speaks protobuf only (application/proto, application/grpc); got codec \(call.codec)")
            return
        }
        do {
            let req: Req
            do { req = try Req(serialized: call.request) } catch let e as ProtoWireError {
                throw ConnectError(.invalidArgument, "cannot decode the request of \(call.procedure): \(e.description)")
            }
            try call.respond(try body(req).serialized())
        } catch let e as ConnectError {
            try? call.fail(e.code, e.message)
        } catch {
            try? call.fail(.internal, "\(error)")
        }
    }

    func watch(_ call: StreamCall) {
        guard call.codec == "proto" else {
            try? call.fail(.invalidArgument, "\(call.procedure) speaks protobuf only")
            return
        }
        let req: HealthCheckRequest
        do { req = try HealthCheckRequest(serialized: try call.receive() ?? []) } catch {
            try? call.fail(.invalidArgument, "cannot decode the request of \(call.procedure): \(error)")
            return
        }
        call.onDone { [health] in health.poke() }
        var seen = health.changeCount
        var last: ServingStatus?
        while !call.isDone {
            // grpc-go answers an unknown service with SERVICE_UNKNOWN on Watch (and keeps watching).
            let s = health.servingStatus(req.service) ?? .serviceUnknown
            if s != last {
                if (try? call.send(HealthCheckResponse(status: s).serialized())) == nil { return }
                last = s
            }
            seen = health.waitForChange(after: seen, untilNs: monotonicNowNs() &+ ControlServices.pollNs)
        }
    }

    func streamStdio(_ call: StreamCall) {
        call.onDone { [stdio] in stdio.poke() }
        while !call.isDone {
            let (d, _) = stdio.next(untilNs: monotonicNowNs() &+ ControlServices.pollNs)
            if let d {
                if (try? call.send(d.serialized())) == nil { return }
            } else if !call.isDone, stdio.isClosed {
                break
            }
        }
        try? call.finish()
    }
}
