#!/usr/bin/env bash
# Device kit: the wheels (and EGL loader .debs) that `genba bench collect` needs on the lent GPU machine (x86-64,
# 16 cores, Python 3.12 at python3, no network, no package registry), for issue 14's 16-core collection point.
# That machine already has torch, torchvision, numpy, pandas, pyarrow, huggingface_hub, opencv, pillow, pyyaml, tqdm,
# requests, fsspec, ... (/work/.library/device/KINDS.md); this kit carries only what it lacks: lerobot and its
# dataset writer (datasets, dill, multiprocess, draccus), PyAV (its wheel holds FFmpeg 7 with x264 and SVT-AV1),
# torchcodec (the decoder: it needs FFmpeg's shared libraries, which that machine likely lacks, so the command below
# gives it PyAV's under their usual names), MuJoCo with PyOpenGL (EGL), gymnasium, and hydra/omegaconf (genba's CLI).
# Ray is not carried: local points only.
#
# Run here, in the repo (needs pip's network and apt-get): `bash scripts/device_kit.sh`. It fills .whl/ (pinned to
# .venv's versions, one version of each) and .gl/, keeps both out of git (.git/info/exclude), prints the sizes and
# fails if they pass 60 MB (what travels in a call is at most 64 MiB, the tracked files included).
#
# Then on the device: run(carry=[".whl", ".gl"], timeout_s=600, command=<the line below>). It installs the kit into
# /tmp/site, checks EGL and the decoder (prints versions), then times 1, 2, 4, 8 and 16 local shard processes,
# multisampling off, H.264 ultrafast and then AV1 (lerobot's preset 12), into $OUT/{h264,av1}.{json,log}; each bench
# is cut off so that the command ends within about 560 s (a cut bench writes no JSON: lower episodes= if it was).
# For a smoke run use episodes=4 repeats=1 and points=[local:1,local:2:2]. With repeats=3 the median drops each
# sharded point's cold first run (its processes importing lerobot, torch and MuJoCo); with 2 it would average it in.
#
# for f in .gl/*.deb; do dpkg -x $f /; done; ldconfig; python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD || exit; (cd /tmp/site/av.libs && for f in lib{avcodec,avformat,avutil,avdevice,avfilter,swscale,swresample}-*; do v=${f##*.so.}; ln -sf $f ${f%%-*}.so.${v%%.*}; done); e=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; [ -e $e ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$e; export LD_LIBRARY_PATH=/tmp/site/av.libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} MUJOCO_GL=egl PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1; python3 -c "import mujoco,numpy,pandas,pyarrow,fsspec,huggingface_hub as h,torchcodec._core.ops as o;mujoco.GLContext(64,64).make_current();print('egl ok; ffmpeg',o.ffmpeg_major_version,numpy.__version__,pandas.__version__,pyarrow.__version__,fsspec.__version__,h.__version__)" || exit; B=(python3 -m genba bench collect episodes=32 repeats=3 'multisampling=[false]' 'points=[local:1,local:2:2,local:4:4,local:8:8,local:16:16]'); timeout 250 "${B[@]}" 'vcodec=[h264]' video_preset=ultrafast out=$OUT/h264.json >$OUT/h264.log 2>&1; timeout $((560-SECONDS)) "${B[@]}" 'vcodec=[av1]' out=$OUT/av1.json >$OUT/av1.log 2>&1; tail -n 3 $OUT/*.log; cat $OUT/*.json
#
# Checked here (not on the device): on Python 3.12 with only the device's packages (numpy 2.5.2, pandas 3.1.1, no
# pytz) plus this kit, the system's FFmpeg libraries hidden and no network, the line above (scaled down) ran
# local:1 and local:2:2 with H.264 ultrafast and AV1, and local:2 with H.264; torchcodec decoded with FFmpeg 7.
set -euo pipefail

cd "$(git rev-parse --show-toplevel)"
PIP=(python3 -m pip)
"${PIP[@]}" --version >/dev/null 2>&1 || PIP=(.venv/bin/python -m pip)

# NAME==VERSION as in .venv (lerobot 0.6 and its dataset writer); antlr4-python3-runtime is an sdist, built below.
WHEELS=(
  lerobot==0.6.1 datasets==4.8.5 dill==0.4.1 multiprocess==0.70.19 draccus==0.11.6 mergedeep==1.3.4 toml==0.10.2
  termcolor==3.3.0 av==15.1.0 torchcodec==0.11.1 mujoco==4.0.0 mujoco-core==4.0.0 pyopengl==3.1.10
  gymnasium==1.4.0 farama-notifications==0.0.6 hydra-core==1.3.8 omegaconf==2.3.1
)
SDISTS=(antlr4-python3-runtime==4.9.3)
GL_DEBS=(libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)  # glvnd's loaders, for EGL on the NVIDIA driver
LIMIT=60000000

exclude="$(git rev-parse --git-path info/exclude)"
mkdir -p "$(dirname "$exclude")" .whl .gl
for p in /.whl/ /.gl/; do grep -qxF "$p" "$exclude" 2>/dev/null || echo "$p" >>"$exclude"; done

if [ -x .venv/bin/python ]; then  # warn when .venv has moved on from these pins
  .venv/bin/python - "${WHEELS[@]}" "${SDISTS[@]}" <<'EOF'
import importlib.metadata as md, sys
for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if have != version:
        print(f"device_kit: warning: .venv has {name} {have}, the kit pins {version}", file=sys.stderr)
EOF
fi

"${PIP[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
  -d .whl "${WHEELS[@]}"
for s in "${SDISTS[@]}"; do
  n="${s%%==*}"; n="${n//-/_}"
  ls .whl/"$n-${s##*==}"-*.whl >/dev/null 2>&1 || "${PIP[@]}" wheel -q --no-deps -w .whl "$s"
done

# Keep one version of each: drop any wheel in .whl/ that is not pinned above (two versions stop the install).
python3 - "${WHEELS[@]}" "${SDISTS[@]}" <<'EOF'
import os, re, sys
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
pins = {(norm(p.split("==")[0]), p.split("==")[1]) for p in sys.argv[1:]}
found = set()
for f in sorted(os.listdir(".whl")):
    name, version = f.split("-")[:2]
    if (norm(name), version) in pins and f.endswith(".whl"):
        found.add((norm(name), version))
    else:
        os.remove(os.path.join(".whl", f))
        print(f"device_kit: removed {f} (not pinned)")
missing = pins - found
if missing:
    sys.exit(f"device_kit: FAILED: no wheel for {sorted(missing)}")
EOF

if [ "${SKIP_GL:-0}" != 1 ]; then
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  mkdir -p /tmp/amd64/partial
  apt-get "${o[@]}" update -qq
  rm -f .gl/*.deb
  (cd .gl && apt-get "${o[@]}" download "${GL_DEBS[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  for d in "${GL_DEBS[@]}"; do
    ls .gl/"${d}"_*.deb >/dev/null 2>&1 || { echo "device_kit: FAILED: no .deb for $d in .gl/" >&2; exit 1; }
  done
fi

ls -l .whl/*.whl .gl/*.deb 2>/dev/null | awk '{printf "%10.2f MB  %s\n", $5 / 1e6, $9}'
total=$(cat .whl/*.whl .gl/*.deb 2>/dev/null | wc -c)
tracked=$(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c)
awk -v k="$total" -v t="$tracked" 'BEGIN { printf "device_kit: kit %.2f MB; with the tracked files %.1f MiB of the 64 MiB a call carries\n", k / 1e6, (k + t) / 1048576 }'
if [ "$total" -gt "$LIMIT" ]; then
  echo "device_kit: FAILED: the kit is $total bytes, over $LIMIT (60 MB); the call would not fit in 64 MiB" >&2
  exit 1
fi
