// Client interceptors: the start hooks run on the calling thread before the request is sent (they
// may add request headers or reject the call); the end hooks run once the result is known: when a
// unary call returns or throws, and for streams when `receive` sees the end, on `cancel`, or when
// the stream is released before its end (ClientStream).
import ConnectPluginHTTP

enum ClientInterceptors {
    static func makeRun(_ client: RPCClient, _ procedure: String, _ kind: MethodKind, _ headers: Metadata, _ timeoutMs: Int64) -> InterceptorRun {
        var all = client.options.headers
        all.append(contentsOf: headers)
        var deadline: UInt64?
        if timeoutMs > 0 {
            let sum = monotonicNowNs().addingReportingOverflow(msToNs(timeoutMs))
            deadline = sum.overflow ? UInt64.max : sum.partialValue
        }
        let call = InterceptorCall(side: .client, procedure: procedure, kind: kind, rpcProtocol: client.options.rpcProtocol,
                                   codec: client.options.codec, peer: nil, requestHeaders: all, deadlineNs: deadline)
        return InterceptorRun(chain: client.chain, call: call)
    }

    /// Runs the start hooks; throws (after the end hooks) when one rejects. Returns the headers
    /// they added.
    static func start(_ run: InterceptorRun) throws -> Metadata {
        if let rejection = run.start() {
            run.end(CallResult(error: rejection))
            throw rejection
        }
        return run.call.lock.withLock { run.call.addedRequestHeaders }
    }

    static func unary(_ client: RPCClient, _ procedure: String, request: [UInt8], headers: Metadata, timeoutMs: Int64,
                      noSideEffects: Bool) throws -> UnaryResponse {
        let run = makeRun(client, procedure, .unary, headers, timeoutMs)
        var h = headers
        h.append(contentsOf: try start(run))
        if run.observesMessages { run.message(.request, request) }
        do {
            let r = try client.unaryDirect(procedure, request: request, headers: h, timeoutMs: timeoutMs, noSideEffects: noSideEffects)
            if run.observesMessages { run.message(.response, r.message) }
            run.end(CallResult(error: nil, responseHeaders: r.headers, trailers: r.trailers))
            return r
        } catch let e as ConnectError {
            run.end(CallResult(error: e, trailers: e.metadata))
            throw e
        } catch {
            run.end(CallResult(error: ConnectError(.internal, "\(error)")))
            throw error
        }
    }

    static func startStream(_ client: RPCClient, _ procedure: String, kind: MethodKind, headers: inout Metadata,
                            timeoutMs: Int64) throws -> InterceptorRun {
        let run = makeRun(client, procedure, kind, headers, timeoutMs)
        headers.append(contentsOf: try start(run))
        return run
    }
}
