// swift-tools-version:6.0
//
// connectplugin: a plugin runtime on Connect RPC, exported as a C ABI (libconnectplugin.so) with a
// Swift core. System libraries only: libnghttp2, OpenSSL 3, zlib.
//
// Layers (each depends only on the ones above it):
//   C shims (CConnectPlugin*)  →  ConnectPluginIO (event loops, thread pool, locks, sockets, in-memory pipes, child processes)
//   →  ConnectPluginHTTP (TLS, HTTP/1.1, HTTP/2; re-exports ConnectPluginIO)
//   →  ConnectPluginRPC (Connect protocol, codes, errors, compression, router, client)
//   →  ConnectPluginRuntime (the plugin runtime: handshake, version negotiation, launch environment, logs)
//   →  ConnectPlugin (the public Swift API)  →  ConnectPluginCABI (@_cdecl exports, libconnectplugin.so)
import PackageDescription

let packageDirectory = Context.packageDirectory
// Sanitizer builds (`make test-tsan`, `make test-asan`) set CONNECTPLUGIN_SANITIZER: a sanitized .so
// cannot link with `-z defs`, because the sanitizer runtime lives in the executable that loads it.
let noUndefinedSymbols: [String] =
    Context.environment["CONNECTPLUGIN_SANITIZER", default: ""].isEmpty ? ["-Xlinker", "-z", "-Xlinker", "defs"] : []
let swift5: [SwiftSetting] = [.swiftLanguageMode(.v5)]
// Complete strict-concurrency checking (as in Swift 6 mode) for the I/O, HTTP and RPC layers: 0 diagnostics.
let swift5Checked: [SwiftSetting] = swift5 + [.enableUpcomingFeature("StrictConcurrency")]

let package = Package(
    name: "connectplugin",
    products: [
        // The Swift API. Free of unsafe flags so that other packages can depend on it.
        .library(name: "ConnectPlugin", targets: ["ConnectPlugin"]),
        // libconnectplugin.so: exports exactly the functions of include/connectplugin.h.
        .library(name: "connectplugin", type: .dynamic, targets: ["ConnectPluginCABI"]),
        .executable(name: "kv-server-swift", targets: ["KVServerSwift"]),
        .executable(name: "kv-client-swift", targets: ["KVClientSwift"]),
        .executable(name: "kv-plugin-swift", targets: ["KVPluginSwift"]),
        .executable(name: "kv-host-swift", targets: ["KVHostSwift"]),
    ],
    targets: [
        // ---- C shims: the only place C headers are imported.
        .target(name: "CConnectPluginPosix"),
        .target(name: "CConnectPluginNGHTTP2", linkerSettings: [.linkedLibrary("nghttp2")]),
        .target(name: "CConnectPluginZlib", linkerSettings: [.linkedLibrary("z")]),
        .target(name: "CConnectPluginOpenSSL", linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        // The public C header as a module, so the exports are checked against it at compile time.
        .target(name: "CConnectPluginABI"),

        // ---- Swift layers.
        .target(
            name: "ConnectPluginIO",
            dependencies: ["CConnectPluginPosix"],
            swiftSettings: swift5Checked
        ),
        .target(
            name: "ConnectPluginHTTP",
            dependencies: ["ConnectPluginIO", "CConnectPluginPosix", "CConnectPluginNGHTTP2", "CConnectPluginOpenSSL"],
            swiftSettings: swift5Checked
        ),
        .target(
            name: "ConnectPluginRPC",
            // CConnectPluginABI: the version constants of include/connectplugin.h (the one place the
            // version is written).
            dependencies: ["ConnectPluginHTTP", "CConnectPluginZlib", "CConnectPluginABI"],
            swiftSettings: swift5Checked
        ),
        // The plugin runtime (go-plugin's host/plugin model): handshake, negotiation, launcher, logs.
        .target(
            name: "ConnectPluginRuntime",
            dependencies: ["ConnectPluginRPC", "ConnectPluginHTTP", "CConnectPluginPosix", "CConnectPluginOpenSSL"],
            swiftSettings: swift5Checked
        ),
        .target(
            name: "ConnectPlugin",
            dependencies: ["ConnectPluginRPC", "ConnectPluginRuntime"],
            swiftSettings: swift5
        ),
        .target(
            name: "ConnectPluginCABI",
            dependencies: ["ConnectPlugin", "CConnectPluginABI"],
            exclude: ["exports.map"],
            swiftSettings: swift5,
            linkerSettings: [
                .unsafeFlags([
                    "-Xlinker", "--version-script=\(packageDirectory)/Sources/ConnectPluginCABI/exports.map",
                    "-use-ld=lld",
                ] + noUndefinedSymbols)
            ]
        ),

        // ---- Examples (the key-value store), built by `make examples`.
        .target(
            name: "KVServiceSwift", dependencies: ["ConnectPlugin"], path: "examples/swift/KVService",
            swiftSettings: swift5),
        .executableTarget(
            name: "KVServerSwift", dependencies: ["ConnectPlugin", "KVServiceSwift"], path: "examples/swift/KVServer",
            swiftSettings: swift5),
        .executableTarget(
            name: "KVPluginSwift", dependencies: ["ConnectPlugin", "KVServiceSwift"], path: "examples/swift/KVPlugin",
            swiftSettings: swift5),
        .executableTarget(
            name: "KVHostSwift", dependencies: ["ConnectPlugin", "KVServiceSwift"], path: "examples/swift/KVHost",
            swiftSettings: swift5),
        .executableTarget(
            name: "KVClientSwift", dependencies: ["ConnectPlugin"], path: "examples/swift/KVClient",
            swiftSettings: swift5),

        // ---- Tests.
        .testTarget(name: "ConnectPluginIOTests", dependencies: ["ConnectPluginIO"], swiftSettings: swift5),
        .testTarget(name: "ConnectPluginHTTPTests", dependencies: ["ConnectPluginHTTP"], swiftSettings: swift5),
        .testTarget(name: "ConnectPluginRPCTests", dependencies: ["ConnectPluginRPC", "ConnectPluginIO"], swiftSettings: swift5),
        .testTarget(name: "ConnectPluginRuntimeTests", dependencies: ["ConnectPluginRuntime"], swiftSettings: swift5),
        .testTarget(name: "ConnectPluginTests", dependencies: ["ConnectPlugin"], swiftSettings: swift5),
    ]
)
