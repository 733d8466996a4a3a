#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Swift toolchain lacks for
# building and testing TinyAsync: cmake, pkg-config, a C compiler and
# liburing's headers. As root it uses apt-get; otherwise it prints the
# command to run. Sourced or run; exits non-zero if something is missing.
set -euo pipefail

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null && command -v make >/dev/null || missing+=(build-essential)
pkg-config --exists liburing 2>/dev/null || missing+=(liburing-dev)

if ((${#missing[@]})); then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  else
    echo "setup: missing ${missing[*]}; install with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
command -v swift >/dev/null || {
  echo "setup: no swift on the PATH; install the Swift 6.3 toolchain from swift.org" >&2
  exit 1
}
