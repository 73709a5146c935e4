// The Swift API of connectplugin: servers and clients speaking Connect, with the same behaviour as
// the C ABI (libconnectplugin.so) that C, Go and Python hosts use.
@_exported import ConnectPluginRPC
@_exported import enum ConnectPluginHTTP.HTTPVersion

/// A Connect server: listen on TCP or Unix sockets, register handlers, start, stop.
public typealias Server = RPCServer
/// A Connect client for one base URL.
public typealias Client = RPCClient

public let connectPluginVersion = "0.1.0"

extension RPCServer {
    /// Registers a handler that returns the response message or throws a `ConnectError`
    /// (any other error fails the call with `internal`).
    public func handle(_ procedure: String, _ body: @escaping (UnaryCall) throws -> [UInt8]) throws {
        try register(procedure) { call in
            do {
                let response = try body(call)
                try? call.respond(response)
            } catch let e as ConnectError {
                for d in e.details { try? call.addErrorDetail(d) }
                try? call.fail(e.kind == .rpc ? e.code : .internal, e.message)
            } catch {
                try? call.fail(.internal, "\(error)")
            }
        }
    }
}
