// swift-tools-version:6.0
// The Swift bench client of bench/hosts.py: a separate package that uses connectplugin's Swift API
// (the ConnectPlugin product) by path, as a Swift user's package does. Built by bench/run.sh with
// `swift build -c release --package-path bench/swift`.
import PackageDescription

let package = Package(
    name: "SwiftBench",
    dependencies: [.package(name: "connectplugin", path: "../..")],
    targets: [
        .executableTarget(
            name: "SwiftBenchClient",
            dependencies: [.product(name: "ConnectPlugin", package: "connectplugin")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        )
    ]
)
