#!/usr/bin/env bash
# Create the project's virtual environments (idempotent; a stamp file skips work already done).
#   bash scripts/setup_env.sh engine        -> .venv/engine      (torch CPU, diffusers, the engine)
#   bash scripts/setup_env.sh blender-5.0   -> .venv/blender-5.0 (bpy 5.0.1: Blender as a module)
#   bash scripts/setup_env.sh blender-4.2   -> .venv/blender-4.2 (bpy 4.2 LTS)
# AA_VENV_DIR overrides where they go (default: .venv in the repository root).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venvs="${AA_VENV_DIR:-$root/.venv}"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null 2>&1 || python=python3

stage() {  # label, folder, command...: run the command, and every 10 s say on stderr how long it
           # has run and how big the folder has grown (pip is silent for minutes while torch downloads)
  local label="$1" dir="$2" pid n=0
  shift 2
  echo "[setup] $label..." >&2
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    n=$((n + 1))
    if [ $((n % 10)) -eq 0 ] && kill -0 "$pid" 2>/dev/null; then
      echo "[setup] $label: ${n} s, $(du -sh "$dir" 2>/dev/null | cut -f1) in $dir so far" >&2
    fi
  done
  wait "$pid"
  echo "[setup] $label: done in ${n} s ($(du -sh "$dir" 2>/dev/null | cut -f1) in $dir)" >&2
}

make_venv() {  # name, then the stamp content
  local dir="$venvs/$1"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$2" ]; then
    return 1
  fi
  echo "[setup] creating $dir" >&2
  rm -rf "$dir"
  "$python" -m venv "$dir"
  stage "upgrading pip in $1" "$dir" "$dir/bin/python" -m pip install -q --upgrade pip >&2
  return 0
}

setup_engine() {
  local dir="$venvs/engine"
  local stamp
  stamp="$(cat "$root/requirements/engine.txt" "$root/pyproject.toml" | sha256sum | cut -c1-16)"
  if make_venv engine "$stamp"; then
    # torch first and pinned, so nothing later pulls a CUDA build.
    echo "[setup] the engine environment: about 1.9 GB on disk (torch CPU is most of it)" >&2
    stage "installing torch (CPU)" "$dir" "$dir/bin/pip" install -q torch==2.13.0 >&2
    stage "installing the engine and its dependencies" "$dir" "$dir/bin/pip" install -q -c "$root/requirements/engine.txt" -e "$root[engine,cluster,dev]" >&2
    if [ -f "$root/requirements/engine-test.txt" ]; then
      stage "installing the test tools" "$dir" "$dir/bin/pip" install -q --no-deps -r "$root/requirements/engine-test.txt" >&2
    fi
    echo "$stamp" > "$dir/.stamp"
  fi
  echo "$dir"
}

setup_blender() {  # version line: 5.0 or 4.2
  local line="$1" spec
  case "$line" in
    5.0) spec="bpy==5.0.1" ;;
    4.2) spec="bpy==4.2.23" ;;
    *) echo "unknown Blender line '$line' (use 5.0 or 4.2)" >&2; exit 2 ;;
  esac
  local dir="$venvs/blender-$line"
  local stamp
  stamp="$(printf '%s' "$spec" | cat - "$root/requirements/blender.txt" | sha256sum | cut -c1-16)"
  if make_venv "blender-$line" "$stamp"; then
    echo "[setup] Blender $line as the bpy module: about 1 GB on disk" >&2
    stage "installing $spec" "$dir" "$dir/bin/pip" install -q "$spec" -r "$root/requirements/blender.txt" >&2
    echo "$stamp" > "$dir/.stamp"
  fi
  echo "$dir"
}

case "${1:-}" in
  engine) setup_engine ;;
  blender-5.0) setup_blender 5.0 ;;
  blender-4.2) setup_blender 4.2 ;;
  *) echo "usage: $0 engine|blender-5.0|blender-4.2" >&2; exit 2 ;;
esac
