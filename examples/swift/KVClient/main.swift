// kv-client-swift: runs a scripted KV sequence against a KV server and prints one line per step.
//   --scenario unary (default): Put/Get/Delete, the five lines of examples/README.md.
//   --scenario stream: the 18 lines of examples/proto/README.md (unary, errors with details,
//     deadline, PutMany, List, Watch half- and full-duplex, cleanup).
// Exit status: 0 when every line is the expected one, 1 otherwise, 2 for a usage error.
import ConnectPlugin
import Glibc

let service = "/connectplugin.examples.kv.v1.KVService/"
let usage = """
    usage: kv-client-swift --url URL [--scenario unary|stream] [--protocol connect|grpc|grpcweb]
                           [--codec proto|json] [--http 1.1|2] [--compression identity|gzip]
                           [--tls-ca CA.pem [--cert CERT.pem --key KEY.pem]]
      URL is http://host:port, https://host:port or unix:///path; --tls-ca (alias --ca) means TLS

    """

func usageError(_ message: String) -> Never {
    fputs("\(message)\n\(usage)", stderr)
    exit(2)
}

// ---- Flags: --name VALUE or --name=VALUE.
let choices: [String: [String]] = [
    "--scenario": ["unary", "stream"],
    "--protocol": ["connect", "grpc", "grpcweb"],
    "--codec": ["proto", "json"],
    "--http": ["1.1", "2"],
    "--compression": ["identity", "gzip"],
]
let aliases = ["--ca": "--tls-ca"]
let known = Set(["--url", "--tls-ca", "--cert", "--key"]).union(choices.keys)
var flags: [String: String] = [:]
var args = CommandLine.arguments.dropFirst().makeIterator()
while let a = args.next() {
    if a == "-h" || a == "--help" {
        print(usage, terminator: "")
        exit(0)
    }
    var name = a
    var value: String?
    if a.hasPrefix("--"), let eq = a.firstIndex(of: "=") {
        name = String(a[..<eq])
        value = String(a[a.index(after: eq)...])
    }
    name = aliases[name] ?? name
    guard known.contains(name) else { usageError("unknown argument \(a)") }
    guard let v = value ?? args.next() else { usageError("\(name) needs a value") }
    if let allowed = choices[name], !allowed.contains(v) {
        usageError("unsupported value \(v) for \(name) (one of: \(allowed.joined(separator: ", ")))")
    }
    flags[name] = v
}
guard var url = flags["--url"] else { usageError("--url is required") }
let scenario = flags["--scenario"] ?? "unary"
let http = flags["--http"] ?? "2"
var options = Client.Options()
options.codec = flags["--codec"] ?? "proto"
options.httpVersion = http == "1.1" ? .http1_1 : .http2
options.compression = flags["--compression"] ?? "identity"
options.rpcProtocol = RPCProtocol(rawValue: flags["--protocol"] ?? "connect") ?? .connect
if options.rpcProtocol == .grpc && options.httpVersion == .http1_1 {
    usageError("gRPC needs HTTP/2 (--http 2)")
}
let ca = flags["--tls-ca"], cert = flags["--cert"], key = flags["--key"]
if (cert == nil) != (key == nil) { usageError("--cert and --key go together") }
if ca != nil || cert != nil || url.hasPrefix("https://") {
    if url.hasPrefix("unix:") { usageError("TLS needs an http(s)://host:port URL") }
    if url.hasPrefix("http://") { url = "https://" + url.dropFirst(7) }  // --tls-ca means TLS
    options.tls = TLSConfig.client(trustedCAs: ca.map { .file($0) }, certificateChain: cert.map { .file($0) },
                                   privateKey: key.map { .file($0) })
}

func fail(_ e: Error) -> Never {
    if let ce = e as? ConnectError { fputs("error: \(ce.code.name): \(ce.message)\n", stderr) } else { fputs("error: \(e)\n", stderr) }
    exit(1)
}

/// The unary scenario of examples/README.md (unchanged: the matrix tests compare it).
func runUnary(_ client: Client) {
    let codec = options.codec
    func get(_ k: String) throws -> Response { try Response(codec, client.unary(service + "Get", request: encodeRequest(codec, k)).message) }
    do {
        _ = try client.unary(service + "Put", request: encodeRequest(codec, "greeting", value: Array("hello".utf8)))
        print("put greeting ok")
        var r = try get("greeting")
        print("get greeting found=\(r.bool(2, "found")) value=\(text(r.bytes(1, "value")))")
        r = try Response(codec, client.unary(service + "Delete", request: encodeRequest(codec, "greeting")).message)
        print("delete greeting existed=\(r.bool(1, "existed"))")
        r = try get("greeting")
        print("get greeting found=\(r.bool(2, "found"))")
        do {
            _ = try get("")
            fputs("error: Get with an empty key succeeded\n", stderr)
            exit(1)
        } catch let e as ConnectError where e.code == .invalidArgument {
            print("get <empty> error=\(e.code.name) message=\(e.message)")
        }
    } catch {
        fail(error)
    }
}

let client: Client
do {
    client = try Client(baseURL: url, options: options)
} catch {
    fail(error)
}
if scenario == "unary" {
    runUnary(client)
    client.close()
    exit(0)
}
let ok = StreamScenario(client: client, codec: options.codec, http: http).run()
client.close()
exit(ok ? 0 : 1)
