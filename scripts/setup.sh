#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Swift toolchain lacks for
# building and testing TinyAsync: cmake, pkg-config, a C compiler and
# liburing's headers. As root it uses apt-get; otherwise it prints the
# command to run. Sourced or run; exits non-zero if something is missing.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt-install.sh"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v pkg-config >/dev/null || missing+=(pkg-config)
command -v cc >/dev/null && command -v make >/dev/null || missing+=(build-essential)
pkg-config --exists liburing 2>/dev/null || missing+=(liburing-dev)
command -v python3 >/dev/null || missing+=(python3)  # the examples' smoke tests

apt_install setup "${missing[@]}"
command -v swift >/dev/null || {
  echo "setup: no swift on the PATH; install the Swift 6.3 toolchain from swift.org" >&2
  exit 1
}
