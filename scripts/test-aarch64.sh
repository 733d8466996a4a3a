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
cd "$(dirname "$0")/.."
jobs=$(nproc)

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v make >/dev/null || missing+=(make)
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
[[ -e /usr/aarch64-linux-gnu/include/stdio.h ]] || missing+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "test-aarch64: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "test-aarch64: missing ${missing[*]}; install with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

step() { printf '\n== %s\n' "$*"; }

step "CMake for aarch64-linux-gnu: build cloop-tests"
cmake -S . -B build-aarch64 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake" \
      -DCLOOP_URING=OFF >/dev/null
cmake --build build-aarch64 -j "$jobs" --target cloop-tests

step "ctest under qemu-aarch64"
# CTest runs each test through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64).
ctest --test-dir build-aarch64 --output-on-failure -j "$jobs" --timeout 300 "$@"

step "aarch64 tests passed"
