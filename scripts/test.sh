#!/usr/bin/env bash
# Runs every test: the SwiftPM debug build and `swift test`; the CMake
# build and its C tests (ctest); the C tests again under ASan+UBSan.
# Installs what is missing first. Build folders: .build (SwiftPM),
# build/ and build-asan/ (CMake).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)

step() { printf '\n== %s\n' "$*"; }

step "SwiftPM: build and swift test"
swift build
swift test

step "CMake: build and ctest"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

step "CMake with ASan+UBSan: build and ctest"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCLOOP_SANITIZE=ON >/dev/null
cmake --build build-asan -j "$jobs"
ctest --test-dir build-asan --output-on-failure -j "$jobs"

step "all tests passed"
