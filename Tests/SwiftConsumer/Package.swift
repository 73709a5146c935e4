// swift-tools-version:6.0
// A separate package that depends on connectplugin by path and uses its Swift library product, the
// way a Swift user's package does. Built and run by `make test-swift`.
import PackageDescription

let package = Package(
    name: "SwiftConsumer",
    dependencies: [.package(name: "connectplugin", path: "../..")],
    targets: [
        .executableTarget(
            name: "SwiftConsumer",
            dependencies: [.product(name: "ConnectPlugin", package: "connectplugin")],
            swiftSettings: [.swiftLanguageMode(.v5)]
        )
    ]
)
