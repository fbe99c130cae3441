"""Build the installable Blender extension zip of the add-on.

    python scripts/build_addon.py [--out dist/] [--validate]

The zip holds blender_addon/ at its root (manifest, modules, skeleton/), the contract package
aa_contract/ inside it (an installed extension cannot import a top-level package of ours; the
add-on's contract.py finds it there), plus the bone maps from rigs/bone_maps/*.json as
skeleton/bone_maps/. Install it with Blender's
Edit > Preferences > Get Extensions > Install from Disk, or `blender --command extension install-file`.
--validate also runs the validator shipped with Blender (blender_ext.py from the bpy wheel of the
running interpreter, or the path given with --blender-ext).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "blender_addon"
CONTRACT = ROOT / "aa_contract"
BONE_MAPS = ROOT / "rigs" / "bone_maps"
EXCLUDE_DIRS = {"__pycache__", ".pytest_cache"}
EXCLUDE_SUFFIXES = {".pyc", ".pyo", ".blend1"}


def package_files() -> list[tuple[Path, str]]:
    """(file on disk, name in the zip) for everything the extension ships."""
    files = []
    for path in sorted(SOURCE.rglob("*")):
        rel = path.relative_to(SOURCE)
        if path.is_dir() or EXCLUDE_DIRS & set(rel.parts) or path.suffix in EXCLUDE_SUFFIXES:
            continue
        files.append((path, rel.as_posix()))
    for path in sorted(CONTRACT.glob("*.py")):
        files.append((path, f"aa_contract/{path.name}"))
    names = {name for _, name in files}
    for path in sorted(BONE_MAPS.glob("*.json")) if BONE_MAPS.is_dir() else []:
        name = f"skeleton/bone_maps/{path.name}"
        if name not in names:
            files.append((path, name))
    return files


def build(out_dir: Path) -> Path:
    manifest = tomllib.loads((SOURCE / "blender_manifest.toml").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{manifest['id']}-{manifest['version']}.zip"
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, name in package_files():
            archive.write(path, name)
    tmp.replace(target)
    return target


def find_blender_ext() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("bpy")  # locate the wheel without importing Blender
    if spec is None or spec.origin is None:
        return None
    found = sorted(Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def validate(target: Path, blender_ext: Path | None) -> int:
    blender_ext = blender_ext or find_blender_ext()
    if blender_ext is None:
        print("error: no blender_ext.py found: run with the bpy environment's python or pass --blender-ext PATH", file=sys.stderr)
        return 2
    return subprocess.run([sys.executable, str(blender_ext), "validate", str(target)]).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    parser.add_argument("--validate", action="store_true", help="run Blender's extension validator on the zip")
    parser.add_argument("--blender-ext", type=Path, default=None, help="path to blender_ext.py (default: from the bpy wheel)")
    args = parser.parse_args(argv)
    target = build(args.out)
    print(target)
    if args.validate:
        return validate(target, args.blender_ext)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
