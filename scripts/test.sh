#!/usr/bin/env bash
# The whole test suite, from nothing: creates the environments (scripts/setup_env.sh) and runs
#   ruff check    (the lint configuration is in pyproject.toml)
#   tests/contract and tests/engine in the engine env (torch CPU + diffusers)
#   tests/blender in real Blender (bpy 5.0.1 and bpy 4.2 LTS), each its own env.
# Extra arguments go to every pytest run (e.g. -k cancel, -x).
# AA_BLENDER_LINES="5.0" limits the Blender lines (default: "5.0 4.2").
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
results="$root/test-results"
rm -rf "$results"; mkdir -p "$results"
status=0

engine="$(bash scripts/setup_env.sh engine)" || { echo "engine environment setup failed" >&2; exit 1; }
echo "== lint (ruff check)"
"$engine/bin/ruff" check . || status=1
echo "== contract and engine tests ($engine)"
"$engine/bin/python" -m pytest tests/contract tests/engine -q -p no:cacheprovider --hypothesis-show-statistics --junitxml="$results/engine.xml" "$@" || status=1

if [ -d tests/blender ] && ls tests/blender/test_*.py >/dev/null 2>&1; then
  for line in ${AA_BLENDER_LINES:-5.0 4.2}; do
    venv="$(bash scripts/setup_env.sh "blender-$line")" || { echo "blender-$line environment setup failed" >&2; exit 1; }
    echo "== Blender $line tests ($venv)"
    AA_ENGINE_PYTHON="$engine/bin/python" "$venv/bin/python" -m pytest tests/blender -q -p no:cacheprovider \
      --junitxml="$results/blender-$line.xml" "$@" || status=1
  done
fi

python3 "$root/scripts/summarize_junit.py" "$results"/*.xml || status=1
exit $status
