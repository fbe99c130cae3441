#!/usr/bin/env bash
# The main job on a fresh machine: set up the engine environment and animate the bundled example.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
engine="$(bash scripts/setup_env.sh engine)"
"$engine/bin/python" -m aa_engine animate --weights random-tiny \
  --reference examples/reference.png --poses examples/poses --out out/demo \
  --width 128 --height 192 --steps 4 "$@"
echo "frames and video in $root/out/demo"
