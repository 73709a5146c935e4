// kv-plugin-swift: the KV service (examples/proto/README.md) served as a plugin that an unmodified
// HashiCorp go-plugin host, or a connectplugin host, launches: handshake cookie KV_PLUGIN=
// connectplugin-kv, app protocol version 1, plugin name "kv". Run by hand it says it is a plugin and
// exits 2. `--listen ADDR` (host:port or unix:PATH) serves it in the runtime's remote mode instead:
// a standalone service that prints `listening on ADDR` and that hosts reach by URL. The service is the same code kv-server-swift serves (examples/swift/KVService).
import ConnectPlugin
import Glibc
import KVServiceSwift

let store = Store()
var config = PluginServeConfig(
    handshake: HandshakeConfig(cookieKey: "KV_PLUGIN", cookieValue: "connectplugin-kv"),
    versionedPlugins: [
        1: ["kv": PluginRegistration(version: connectPluginVersion, servicePath: kvServicePath) { server in
            try registerKVService(on: server, store: store, logPuts: true)
        }],
    ])
// Every streaming call holds a handler thread while it runs (a Watch until the host half-closes).
config.serverOptions.handlerThreads = 64
let argv = Array(CommandLine.arguments.dropFirst())
if argv.count == 2 && argv[0] == "--listen" {
    config.listenAddress = argv[1]
} else if !argv.isEmpty {
    fputs("usage: kv-plugin-swift [--listen ADDR]\n", stderr)
    exit(2)
}
exit(PluginServer.serve(config))
