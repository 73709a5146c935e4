// Server interceptors: when a server starts, every route with interceptors gets its handler wrapped
// in the chain (server-wide interceptors first, then the procedure's). The wrapper runs on the
// handler thread, so a slow start hook (a Go or Python host's) never stalls an I/O loop (an inline
// route's wrapper runs inline on the loop with its handler, so its hooks must be quick too); the end
// hooks run from `ServerCallCore.finish`, the one place every call ends.
import ConnectPluginHTTP

enum ServerInterceptors {
    /// The routes with their handlers wrapped in their chains.
    static func apply(_ routes: [String: Route], server: [any Interceptor], perProcedure: [String: [any Interceptor]]) -> [String: Route] {
        if server.isEmpty && perProcedure.isEmpty { return routes }
        var out = routes
        for (procedure, route) in routes {
            let list = server + (perProcedure[procedure] ?? [])
            if list.isEmpty { continue }
            out[procedure] = wrap(route, InterceptorChain(list))
        }
        return out
    }

    static func wrap(_ r: Route, _ chain: InterceptorChain) -> Route {
        var unary: UnaryHandler?
        var stream: StreamHandler?
        if let h = r.unary {
            unary = { call in
                guard let run = begin(call.core, chain, call.procedure, .unary, call.requestHeaders, call.deadlineNs, call.peer) else { return }
                if run.observesMessages { run.message(.request, call.request) }
                h(call)
            }
        }
        if let h = r.stream {
            let kind = r.kind
            stream = { call in
                guard let run = begin(call.core, chain, call.procedure, kind, call.requestHeaders, call.deadlineNs, call.peer) else { return }
                if run.observesMessages { call.observer = run }
                h(call)
            }
        }
        return Route(kind: r.kind, unary: unary, stream: stream, noSideEffects: r.noSideEffects, inline: r.inline)
    }

    /// Runs the start hooks; nil when the call must not reach its handler (rejected, or already over).
    private static func begin(_ core: ServerCallCore, _ chain: InterceptorChain, _ procedure: String, _ kind: MethodKind,
                              _ headers: Metadata, _ deadlineNs: UInt64?, _ peer: HTTPPeerInfo?) -> InterceptorRun? {
        let call = InterceptorCall(side: .server, procedure: procedure, kind: kind, rpcProtocol: core.proto, codec: core.codec,
                                   peer: peer, requestHeaders: headers, deadlineNs: deadlineNs)
        let run = InterceptorRun(chain: chain, call: call)
        let attached: Bool = core.lock.withLock {
            if core.finished { return false }  // the deadline passed first: no hook ran, none ends
            core.interceptorRun = run
            return true
        }
        if !attached { return nil }
        // A client that cancels or goes away ends the call there and then (on the I/O thread; after
        // the start hooks if they still run), not when the handler gets round to returning.
        core.stream.onCancel { run.end(CallResult(error: departure(run.call))) }
        let rejection = run.start()
        let headers = call.takeAddedResponseHeaders()
        let trailers = call.takeAddedResponseTrailers()
        core.lock.withLock {
            if !core.headersSent { core.responseHeaders.append(contentsOf: headers) }
            core.responseTrailers.append(contentsOf: trailers)
        }
        if let rejection {
            core.finish(message: nil, error: rejection)
            return nil
        }
        return run
    }

    /// The result of a call whose client canceled it or went away.
    static func departure(_ call: InterceptorCall) -> ConnectError {
        if let d = call.deadlineNs, monotonicNowNs() >= d {
            return ConnectError(.deadlineExceeded, "the deadline passed before the call finished")
        }
        return ConnectError(.canceled, "the client canceled the call or went away")
    }

    /// From `finish`: the end hooks see the result; trailers they add go out with the response.
    static func end(_ run: InterceptorRun, _ core: ServerCallCore, message: [UInt8]?, error: ConnectError?, byRuntime: Bool,
                    headers: Metadata, trailers: inout Metadata) {
        var err = error
        if core.stream.isCanceled && err?.code != .deadlineExceeded { err = departure(run.call) }
        if let m = message, err == nil, run.observesMessages { run.message(.response, m) }
        if run.end(CallResult(error: err, responseHeaders: headers, trailers: trailers)) {
            trailers.append(contentsOf: run.call.takeAddedResponseTrailers())
        }
    }
}
