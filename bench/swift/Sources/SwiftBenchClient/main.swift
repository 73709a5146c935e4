// The Swift bench client: sequential unary calls of /bench.v1.BenchService/Unary through the Swift
// API, speaking the stdio protocol of bench/hosts.py (see unary_bench.c --stdio):
//   SwiftBenchClient URL   BENCH_WARMUP calls, print "warm", wait for a line on stdin, BENCH_N
//                          timed calls, print "result median_us=X p99_us=Y client_cpu_us=A client_ctxsw=C"
//   SwiftBenchClient plugin:PATH   the same through a plugin host: PluginClient (PATH: bench_server
//                          plugin), dispense("bench"); "warm pid=P launch_us=L" (launch to the first answer)
// BENCH_PROTOCOL (connect, grpc) picks the plain client's protocol.
import ConnectPlugin
import Glibc

func envInt(_ name: String, _ fallback: Int) -> Int {
    guard let p = getenv(name), let n = Int(String(cString: p)), n > 0 else { return fallback }
    return n
}

func nowNs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func usage() -> (cpuNs: Int64, ctxsw: Int64) {
    var ru = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
    let us = Int64(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1_000_000 + Int64(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec)
    return (us * 1000, Int64(ru.ru_nvcsw + ru.ru_nivcsw))
}

func fail(_ message: String) -> Never {
    fputs("swift client: \(message)\n", stderr)
    exit(1)
}

let args = CommandLine.arguments
if args.count != 2 { fail("usage: SwiftBenchClient URL") }
let n = envInt("BENCH_N", 20000)
let warmup = envInt("BENCH_WARMUP", 2000)
var options = Client.Options()
options.httpVersion = .http2
if let p = getenv("BENCH_PROTOCOL"), let proto = RPCProtocol(rawValue: String(cString: p)) { options.rpcProtocol = proto }
var request = [UInt8](repeating: UInt8(ascii: "q"), count: 64)
request[0] = 0x0a
request[1] = 62
let client: Client
var plugin: PluginClient? = nil
var warmLine = "warm"
if args[1].hasPrefix("plugin:") {
    let t0 = nowNs()
    let host = PluginClient(config: PluginClientConfig(
        handshake: HandshakeConfig(cookieKey: "BENCH_PLUGIN", cookieValue: "connectplugin-bench"),
        versionedPlugins: [1: ["bench"]], command: PluginCommand(path: String(args[1].dropFirst("plugin:".count)))))
    do {
        try host.start()
        client = try host.dispense("bench")
        _ = try client.unary("/bench.v1.BenchService/Unary", request: request)
    } catch { fail("plugin: \(error)") }
    plugin = host
    warmLine = "warm pid=\(host.pid ?? 0) launch_us=\(Double(nowNs() - t0) / 1000)"
} else {
    do { client = try Client(baseURL: args[1], options: options) } catch { fail("\(error)") }
}

@inline(never) func call() {
    do {
        let reply = try client.unary("/bench.v1.BenchService/Unary", request: request)
        if reply.message.count != 64 { fail("response of \(reply.message.count) bytes") }
    } catch { fail("\(error)") }
}

for _ in 0..<warmup { call() }
print(warmLine)
fflush(stdout)
guard readLine() != nil else { exit(1) }
var samples = [Int64](repeating: 0, count: n)
let before = usage()
for i in 0..<n {
    let t0 = nowNs()
    call()
    samples[i] = nowNs() - t0
}
let after = usage()
samples.sort()
let p99 = max(0, Int(Double(n) * 0.99 + 0.5) - 1)
func fmt(_ v: Double) -> String {
    let r = (v * 100).rounded() / 100
    return "\(r)"
}
print("result median_us=\(fmt(Double(samples[n / 2]) / 1000)) p99_us=\(fmt(Double(samples[p99]) / 1000))"
    + " client_cpu_us=\(fmt(Double(after.cpuNs - before.cpuNs) / 1000 / Double(n)))"
    + " client_ctxsw=\(fmt(Double(after.ctxsw - before.ctxsw) / Double(n)))")
fflush(stdout)
// A dispensed client is the plugin's one connection (PluginClient.dispense): kill closes it, after
// Shutdown (closing it first would make Shutdown fail and kill wait for SIGTERM).
if let plugin { plugin.kill() } else { client.close() }
