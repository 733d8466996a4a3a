#!/usr/bin/env bash
# Runs the TinyAsync demo (installing what is missing first).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec swift run -q tinyasync-demo "$@"
