#!/usr/bin/env bash
# The main job on a fresh machine, set-up included:
#   environments (engine: torch CPU + diffusers; Blender 5.0 as the bpy module)
#   -> a shot .blend: the bundled rig (rigs/bundled_rig.py), its camera and demo motion
#   -> the add-on's command-line render: skeleton maps -> engine subprocess (the engine's default
#      model when aa_engine/default_model/ holds one, else the random-tiny test weights;
#      AA_DEMO_WEIGHTS=PATH|random-tiny overrides)
#      -> frames + video.mp4 -> ONE image-sequence strip in the VSE of a saved .blend.
# Extra arguments go to the command-line render (docs/addon.md), e.g. --steps 8 --weights PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
engine="$(bash scripts/setup_env.sh engine)"
blender="$(bash scripts/setup_env.sh blender-5.0)"
out="$root/out/demo"
rm -rf "$out"
mkdir -p "$out"

echo "== building the shot: the bundled rig (walk + wave, 48 frames) with its camera -> $out/shot.blend"
"$blender/bin/python" rigs/bundled_rig.py --out "$out/shot.blend"

weights="${AA_DEMO_WEIGHTS:-}"
if [ -z "$weights" ]; then
  if [ -f aa_engine/default_model/model.safetensors ]; then weights="aa_engine/default_model"; else weights="random-tiny"; fi
fi
if [ "$weights" = "random-tiny" ]; then
  # the random test model: a quick look at the plumbing, at the rig's own map size
  settings=(--width 128 --height 192 --steps 4)
else
  # a trained model (the shipped default, or AA_DEMO_WEIGHTS=PATH): its native size (the render asks
  # the engine for it) and the "fast" preset: DPM-Solver++ 8 steps, guidance on the first half, the
  # best-scoring setting on the default model's evaluation (docs/performance.md section 1,
  # docs/default_model.md). Extra arguments override, e.g. --width 512 --height 768.
  settings=(--preset fast)
fi

echo "== rendering with weights '$weights' (rig -> skeleton maps -> engine -> frames -> one VSE strip)"
began=$(date +%s%N)
"$blender/bin/python" -m blender_addon.command_line "$out/shot.blend" \
  --engine-python "$engine/bin/python" --weights "$weights" --device cpu \
  --reference examples/reference.png "${settings[@]}" \
  --shot demo --output "$out" --save "$out/demo.blend" "$@"
ended=$(date +%s%N)
frames=$(find "$out/demo" -path '*/frames/frame_*.png' | wc -l)

echo
echo "keypoints:     $out/demo/v001/poses/keypoints.json"
echo "frames:        $out/demo/v001/frames/frame_00001.png ..."
echo "video:         $out/demo/v001/frames/video.mp4"
echo "blend + strip: $out/demo.blend (open it, Video Sequencing workspace)"
ms=$(( (ended - began) / 1000000 ))
printf 'rendered:      %s frames in %d.%01d s (Blender export, engine start, model load, generation, video, strip)\n' \
  "$frames" $((ms / 1000)) $((ms % 1000 / 100))
