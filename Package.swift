// swift-tools-version: 6.1
// Hidra: a declarative router for high-rate detector data.
//
// Module arrows go one way (see docs/architecture.md):
//   hidra-run -> HidraNodes -> HidraRuntime -> ZeroMQ
//   HidraNodes, HidraRuntime -> HidraGraph
//   HidraNodes -> HidraCodec (image codecs) -> CLZ4; HidraNodes -> swift-nio (the monitor's HTTP)
// HidraGraph does no I/O beyond reading the graph file.
import PackageDescription

let package = Package(
  name: "Hidra",
  products: [
    .executable(name: "hidra-run", targets: ["hidra-run"]),
    .library(name: "HidraGraph", targets: ["HidraGraph"]),
    .library(name: "HidraClient", targets: ["HidraClient"]),
  ],
  dependencies: [
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
    // HTTP client: the eiger-filewriter source and the eiger-stream `api:` (SIMPLON REST).
    .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    // HTTP server (simplon-monitor) and the tests' fake detector control unit.
    .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
  ],
  targets: [
    // System libraries from Debian (libzmq3-dev, libxxhash-dev, liblz4-dev); see Makefile `setup`.
    .systemLibrary(name: "CZeroMQ", path: "Sources/CZeroMQ"),
    .systemLibrary(name: "CXXHash", path: "Sources/CXXHash"),
    .systemLibrary(name: "CLZ4", path: "Sources/CLZ4"),
    // Detector image codecs: LZ4, bitshuffle+LZ4, TIFF. No I/O.
    .target(name: "HidraCodec", dependencies: ["CLZ4"]),
    .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
    .target(name: "HidraGraph", dependencies: [.product(name: "Yams", package: "Yams")]),
    .target(
      name: "HidraRuntime",
      dependencies: ["HidraGraph", .product(name: "DequeModule", package: "swift-collections")]
    ),
    // Reading Hidra's wire protocol: used by the zmq source and by Swift consumers.
    .target(
      name: "HidraClient",
      dependencies: ["HidraRuntime", "ZeroMQ", .product(name: "DequeModule", package: "swift-collections")]
    ),
    .target(
      name: "HidraNodes",
      dependencies: [
        "HidraGraph", "HidraRuntime", "HidraClient", "HidraCodec", "ZeroMQ", "CXXHash",
        .product(name: "Crypto", package: "swift-crypto"),
        .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
        .product(name: "DequeModule", package: "swift-collections"),
        .product(name: "AsyncHTTPClient", package: "async-http-client"),
      ]
    ),
    .executableTarget(
      name: "hidra-run",
      dependencies: [
        "HidraGraph", "HidraNodes", "HidraRuntime",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ]
    ),
    .executableTarget(
      name: "hidra-bench",
      dependencies: [
        "HidraGraph", "HidraNodes", "HidraRuntime", "HidraCodec", "HidraClient", "ZeroMQ", "CXXHash",
        .product(name: "Yams", package: "Yams"),
      ],
      path: "bench/hidra-bench"
    ),
    .testTarget(
      name: "HidraGraphTests", dependencies: ["HidraGraph", "HidraNodes"],
      exclude: ["Fixtures"]  // read at test time from #filePath, not bundled
    ),
    .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"]),
    .testTarget(name: "HidraRuntimeTests", dependencies: ["HidraRuntime", "HidraGraph"]),
    // Runs the hidra-run executable that `swift build` puts in .build/.
    .testTarget(name: "HidraRunTests"),
    .testTarget(
      name: "HidraNodesTests",
      dependencies: [
        "HidraNodes", "HidraRuntime", "HidraGraph", "HidraClient", "HidraCodec", "ZeroMQ",
        .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio"),
        .product(name: "NIOHTTP1", package: "swift-nio"),
      ]),
  ]
)
