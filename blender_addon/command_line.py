"""The command-line render: the same job as the render button, blocking, printing progress.

With Blender (render farms):
    blender -b shot.blend --python blender_addon/command_line.py -- --weights random-tiny --save out.blend
With the bpy module (tests, scripts):
    python -m blender_addon.command_line shot.blend --weights random-tiny --save out.blend
The scene's shot list (docs/addon.md, "Shots"): `--shot NAME` renders one shot of it, `--all-shots`
every shot, one after another through one engine, each into a new version folder.

Exit status: 0 done, 2 an error the user can fix (printed as `error:` / `hint:` lines), 1 a bug.
"""

from __future__ import annotations

import argparse
import sys

if __package__:  # run as a script (`blender --python .../command_line.py`), _run_as_script imports the package
    from .contract import settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="animate_anyone", description="Render one shot with Animate Anyone and import it as one VSE strip.")
    p.add_argument("blend", nargs="?", help="the .blend to open (omit when Blender already opened one)")
    p.add_argument("--scene", help="scene name (default: the file's active scene)")
    p.add_argument("--armature", help="armature object (default: the active or only one)")
    p.add_argument("--reference", help="reference image file (default: the shot settings')")
    p.add_argument("--bone-map", help="bone map name or .json (default: detect)")
    rescale = p.add_mutually_exclusive_group()
    rescale.add_argument("--rescale-frame", type=int, metavar="FRAME",
                         help="rescale the poses to the reference character, the rig posed like it at this frame (docs/pose_rescaling.md)")
    rescale.add_argument("--rescale-keypoints", metavar="TRACK",
                         help="rescale the poses to the reference character's keypoints in this aa-keypoints/1 track (its first frame)")
    rescale.add_argument("--no-rescale", action="store_true", help="switch off a rescaling saved in the shot settings")
    p.add_argument("--align-frame", type=int, metavar="FRAME",
                   help="with rescaling: the shot's frame posed most like the reference (default: the shot's first frame)")
    p.add_argument("--start", type=int, help="first frame (default: the scene's)")
    p.add_argument("--end", type=int, help="last frame (default: the scene's)")
    p.add_argument("--render-size", action="store_true", help="generate at the scene's render resolution (rounded to multiples of 8) instead of the model's native size")
    p.add_argument("--output", help="folder for the shot folder (default: the shot settings', //animate_anyone/)")
    p.add_argument("--shot", help="the shot of the scene's shot list to render; without a shot list: the single shot's name (default: the scene's name)")
    p.add_argument("--all-shots", action="store_true", help="render every shot of the scene's shot list, one after another through one engine")
    p.add_argument("--skeleton-strip", action="store_true", help="also import the skeleton maps as a second strip")
    p.add_argument("--match-scene", action="store_true", help="set the scene's render size to the frames' size")
    p.add_argument("--engine-python", help="the engine environment's python (default: preferences, then $AA_ENGINE_PYTHON)")
    p.add_argument("--weights", help="weights folder or 'random-tiny' (default: preferences, then the engine's default)")
    p.add_argument("--device", help="auto, cpu, cuda, mps")
    p.add_argument("--dtype", help="auto, fp32, fp16, bf16")
    p.add_argument("--remote", "--engine-address", dest="remote", metavar="HOST:PORT",
                   help="render on a remote engine (`aa_engine serve --listen`, docs/remote.md); --engine-address is the old name")
    p.add_argument("--token-file", help="with --remote: a file holding the engine's token")
    p.add_argument("--tls-ca", help="with --remote: use TLS, trusting this certificate/CA file (PEM)")
    p.add_argument("--tls-fingerprint", help="with --remote: use TLS, trusting the certificate with this SHA-256 fingerprint")
    p.add_argument("--save", help="save the .blend with the strip here (default: <shot folder>/<shot>.blend)")
    # The generation settings, declared once (aa_contract/settings.py); omitted = the .blend's value.
    # --width/--height set a custom size; --fps overrides the scene's frame rate.
    settings.add_arguments(p, with_defaults=False)
    return p


def _argv() -> list[str]:
    import bpy

    if bpy.app.background and "--" in sys.argv:  # blender -b file --python this.py -- ARGS
        return sys.argv[sys.argv.index("--") + 1:]
    return sys.argv[1:]


def apply_arguments(scene, args) -> None:
    """Copy the given options into the scene's shot settings (the same settings the panel edits)."""
    s = scene.animate_anyone
    if args.armature:
        s.armature = scene.objects.get(args.armature)
        if s.armature is None or s.armature.type != 'ARMATURE':
            from .errors import NoArmature

            raise NoArmature(f"Scene '{scene.name}' has no armature named '{args.armature}'.", "Names: " + ", ".join(o.name for o in scene.objects if o.type == 'ARMATURE'))
    if args.reference:
        s.reference_source, s.reference_path = 'FILE', args.reference
    if args.bone_map:
        s.bone_map = args.bone_map
    if args.rescale_frame is not None:
        s.rescale, s.rescale_source, s.reference_pose_frame = True, 'FRAME', args.rescale_frame
    if args.rescale_keypoints:
        s.rescale, s.rescale_source, s.reference_keypoints = True, 'FILE', args.rescale_keypoints
    if args.no_rescale:
        s.rescale = False
    if args.align_frame is not None:
        if not s.rescale:
            from .errors import AddonError

            raise AddonError("--align-frame only applies when the poses are rescaled, and rescaling is off.",
                             "Add --rescale-frame FRAME or --rescale-keypoints TRACK (or switch on 'Rescale to Reference' in the .blend).")
        s.align_first_frame, s.align_frame = False, args.align_frame
    if args.start is not None or args.end is not None:
        s.use_scene_range = False
        s.frame_start = args.start if args.start is not None else scene.frame_start
        s.frame_end = args.end if args.end is not None else scene.frame_end
    given = settings.from_arguments(args)
    settings.validate(given, fill_defaults=False)  # the contract's message, before anything is set
    if "width" in given or "height" in given:
        s.size_source = 'CUSTOM'
    elif args.render_size:
        s.size_source = 'RENDER'
    if "fps" in given:
        scene.render.fps, scene.render.fps_base = max(1, round(given["fps"])), max(1, round(given["fps"])) / given["fps"]
    for name, value in given.items():
        if settings.BY_NAME[name].addon_property:
            setattr(s, name, value)
    if args.output:
        s.output_dir = args.output
    if args.shot and not len(s.shots):
        s.shot_name = args.shot
    if args.skeleton_strip:
        s.import_pose_preview = True


def remote_overrides(args) -> dict:
    """The engine settings --remote, --token-file, --tls-ca and --tls-fingerprint give (empty: the preferences')."""
    from .errors import AddonError

    if not args.remote:
        if args.token_file or args.tls_ca or args.tls_fingerprint:
            raise AddonError("--token-file, --tls-ca and --tls-fingerprint go with --remote HOST:PORT.", "Add --remote, or drop them.")
        return {}
    token = ""
    if args.token_file:
        try:
            token = open(args.token_file, encoding="utf-8").read().strip()
        except OSError as exc:
            raise AddonError(f"The token file {args.token_file} cannot be read ({exc.strerror or exc}).",
                             "Copy the engine's token file (its path is printed when the engine starts) to this machine.") from exc
        if not token:
            raise AddonError(f"The token file {args.token_file} is empty.", "Copy the engine's token file again.")
    return {"address": args.remote, "token": token, "tls_ca": args.tls_ca or "", "tls_fingerprint": args.tls_fingerprint or ""}


def main(argv: list[str] | None = None) -> int:
    import bpy

    from . import runtime, vse
    from .errors import UserError
    from .render_shot import render_blocking

    args = build_parser().parse_args(_argv() if argv is None else argv)
    registered_here = False
    try:
        if args.blend:
            bpy.ops.wm.open_mainfile(filepath=args.blend, load_ui=False)
        if not hasattr(bpy.types.Scene, "animate_anyone"):
            from . import register

            register()
            registered_here = True
        scene = bpy.data.scenes.get(args.scene) if args.scene else bpy.context.scene
        if scene is None:
            print(f"error: no scene named '{args.scene}' (scenes: {', '.join(s.name for s in bpy.data.scenes)})", file=sys.stderr)
            return 2
        apply_arguments(scene, args)
        overrides = {"python": args.engine_python, "weights": args.weights, "device": args.device, "dtype": args.dtype, **remote_overrides(args)}
        if args.all_shots or (args.shot and len(scene.animate_anyone.shots)):
            from .render_shot import render_shot_list

            return render_shot_list(bpy.context, scene, args, overrides)
        task, strip = render_blocking(bpy.context, scene, overrides, echo=lambda line: print(line, flush=True))
        if args.match_scene:
            w, h = vse.match_scene_to_frames(scene, task.progress.frames)
            print(f"render size set to {w}x{h}")
        save = args.save or str(task.plan.shot_dir / f"{task.plan.shot_name}.blend")
        bpy.ops.wm.save_as_mainfile(filepath=save, copy=False)
        print(f"strip '{strip.name}': {len(strip.elements)} frames from frame {int(strip.frame_start)} on channel {strip.channel}")
        print(f"saved {save}")
        if task.progress.video:
            print(f"video {task.progress.video}")
        return 0
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 2
    finally:
        runtime.reset()
        if registered_here:
            from . import unregister

            unregister()
        sys.stdout.flush()


def _run_as_script() -> None:
    """`blender --python .../command_line.py`: import the add-on package this file belongs to."""
    import importlib
    from pathlib import Path

    here = Path(__file__).resolve().parent
    if str(here.parent) not in sys.path:
        sys.path.insert(0, str(here.parent))
    module = importlib.import_module(f"{here.name}.command_line")
    status = module.main()
    sys.stdout.flush()
    sys.stderr.flush()
    import os

    os._exit(status)  # bpy may hang or crash at interpreter exit (see tests/blender/conftest.py)


if __name__ == "__main__":
    if __package__:
        _status = main()
        sys.stdout.flush()
        sys.stderr.flush()
        import os

        os._exit(_status)
    else:
        _run_as_script()
