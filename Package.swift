// swift-tools-version: 6.0
//
// TinyAsync: Python asyncio's model as a small C core (CLoop) with a thin,
// safe Swift layer (TinyAsync). CMakeLists.txt builds the same C core for C
// users; SwiftPM builds everything Swift. Tests/c is CMake's alone: no target
// here names it, so SwiftPM ignores it.
import PackageDescription

let package = Package(
  name: "TinyAsync",
  // Linux only (epoll, eventfd, io_uring). SwiftPM's `platforms:` lists only
  // Apple minimum versions, so there is nothing to declare for Linux here.
  products: [
    .library(name: "CLoop", targets: ["CLoop"]),
    .library(name: "TinyAsync", targets: ["TinyAsync"]),
  ],
  dependencies: [
    // The Swift layer logs (an unretrieved task error) through swift-log,
    // as server-side Swift does.
    .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
  ],
  targets: [
    // liburing (apt: liburing-dev) for CLoop's io_uring backend; internal
    // to CLoop: its public header does not include liburing.h.
    .systemLibrary(
      name: "CLiburing",
      path: "Sources/CLiburing",
      pkgConfig: "liburing",
      providers: [.apt(["liburing-dev"])]
    ),
    .target(
      name: "CLoop",
      dependencies: ["CLiburing"],
      path: "Sources/CLoop",
      publicHeadersPath: "include",
      // `-D_GNU_SOURCE=` (empty) equals a plain `#define _GNU_SOURCE` in a
      // .c file, so the two do not clash with a redefinition warning. The
      // internal headers are included by their folder ("loop/loop.h").
      cSettings: [.define("_GNU_SOURCE", to: ""), .headerSearchPath(".")],
      linkerSettings: [.linkedLibrary("pthread")]
    ),
    .target(
      name: "TinyAsync",
      dependencies: ["CLoop", .product(name: "Logging", package: "swift-log")]
    ),
    .executableTarget(
      name: "tinyasync-demo",
      dependencies: ["TinyAsync"],
      path: "examples/demo"
    ),
    .executableTarget(
      name: "tinyasync-echo",
      dependencies: ["TinyAsync"],
      path: "examples/echo-swift",
      exclude: ["test_echo.py"]
    ),
    .executableTarget(
      name: "tinyasync-udp-echo",
      dependencies: ["TinyAsync"],
      path: "examples/udp-echo-swift"
    ),
    .executableTarget(
      name: "tinyasync-http-hello",
      dependencies: ["TinyAsync"],
      path: "examples/http-hello",
      exclude: ["test_http.py"]
    ),
    // A C library that owns its socket (line_client.c), driven from Swift
    // through a FileDescriptorWatcher.
    .target(
      name: "CLineClient",
      path: "examples/fd-watcher/CLineClient"
    ),
    .executableTarget(
      name: "tinyasync-fd-watcher",
      dependencies: ["TinyAsync", "CLineClient"],
      path: "examples/fd-watcher",
      exclude: ["CLineClient", "README.md"]
    ),
    // The Swift side of ../shared/peers/WORKLOADS.md, run by bench/project-bench.
    .executableTarget(
      name: "tinyasync-bench",
      dependencies: ["TinyAsync", "CLoop"],  // CLoop: the floors (Floors.swift)
      path: "bench/swift"
    ),
    .testTarget(
      name: "CLoopTests",
      dependencies: ["CLoop"]
    ),
    // A stand-in for a C library that owns its socket, which the
    // FileDescriptorWatcher tests drive.
    .target(
      name: "CFdPeer",
      path: "Tests/CFdPeer"
    ),
    .testTarget(
      name: "TinyAsyncTests",
      // Logging: a recording LogHandler for the loop's injectable logger.
      dependencies: ["TinyAsync", "CFdPeer", .product(name: "Logging", package: "swift-log")]
    ),
  ],
  swiftLanguageModes: [.v6]
)
