#!/usr/bin/env bash
# Cross-builds the C core and its tests for AArch64 Linux and runs them
# under qemu-user: the AArch64 switch (coro_aarch64.S) and everything else
# on the other ABI. Installs the cross compiler and qemu when missing (as
# root with apt-get; otherwise prints the command). Build folder:
# build-aarch64/. Extra arguments go to ctest (e.g. -R switch_).
#
# Only the C tests: SwiftPM does not cross-compile here. The io_uring
# backend is left out (-DCLOOP_URING=OFF: qemu-user has no io_uring
# syscalls, and the target's liburing is not installed); its tests SKIP,
# as on a kernel without io_uring.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"
cd "$(dirname "$0")/.."
jobs=$(nproc)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[[ -e /usr/aarch64-linux-gnu/include/stdio.h ]] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
apt_install test-aarch64 "${missing[@]}"

step() { printf '\n== %s\n' "$*"; }

step "CMake for aarch64-linux-gnu: build cloop-tests"
cmake -S . -B build-aarch64 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
      -DCLOOP_URING=OFF >/dev/null
cmake --build build-aarch64 -j "$jobs" --target cloop-tests

step "ctest under qemu-aarch64"
# CTest runs each test through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64).
# Only cloop-tests is built for the target: the C examples' smoke tests
# and the docs checks (a host Python, which CTest would hand to qemu too)
# are left to the native run.
ctest --test-dir build-aarch64 --output-on-failure -j "$jobs" --timeout 300 \
      -E '^(example_|docs_)' "$@"

step "aarch64 tests passed"
