#!/usr/bin/env bash
# Set up genba on a fresh machine: find Python >= 3.12, install missing system libraries, create .venv, install.
# Called by `make` (through the .venv/.genba-installed stamp), so a second run with nothing changed does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
STAMP=$VENV/.genba-installed

# 1. An interpreter >= 3.12 (lerobot 0.6 needs it). pyenv shims exit non-zero unless their version is selected, so every
#    candidate is probed by running it, and pyenv's own version folders are searched directly.
find_python() {
  local candidates=()
  [ -n "${GENBA_PYTHON:-}" ] && candidates+=("$GENBA_PYTHON")
  candidates+=(python3.14 python3.13 python3.12 python3)
  local root="${PYENV_ROOT:-$HOME/.pyenv}"
  if [ -d "$root/versions" ]; then
    # Newest first; only plain CPython version folders (3.12.1, 3.13.0), not envs or other interpreters.
    while IFS= read -r v; do candidates+=("$root/versions/$v/bin/python3"); done \
      < <(ls "$root/versions" | grep -E '^3\.[0-9]+\.[0-9]+$' | sort -t. -k1,1nr -k2,2nr -k3,3nr)
  fi
  # Prefer 3.12 (what the ranges in pyproject.toml are tested on), then any newer interpreter.
  local want
  for want in '== (3, 12)' '>= (3, 12)'; do
    for c in "${candidates[@]}"; do
      if "$c" -c "import sys, venv; sys.exit(0 if sys.version_info[:2] $want else 1)" >/dev/null 2>&1; then
        command -v "$c" 2>/dev/null || echo "$c"
        return 0
      fi
    done
  done
  return 1
}

# 2. System libraries: open3d needs libusb-1.0; torchcodec needs FFmpeg's shared libraries (lerobot falls back to pyav
#    without them, but decoding is slower). MuJoCo's headless rendering needs EGL (Mesa on a CPU machine).
missing_packages() {
  local libs; libs=$(ldconfig -p 2>/dev/null || true)
  grep -q 'libusb-1.0.so.0' <<<"$libs" || echo libusb-1.0-0
  grep -q 'libavutil.so' <<<"$libs" || echo ffmpeg
  grep -q 'libEGL.so.1' <<<"$libs" || echo libegl1
  grep -q 'libOSMesa\|libEGL_mesa' <<<"$libs" || echo libegl-mesa0
}

install_system_packages() {
  local pkgs; pkgs=$(missing_packages | tr '\n' ' ')
  [ -z "${pkgs// /}" ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "genba setup: installing system packages: $pkgs"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  else
    echo "genba setup: WARNING: missing system packages: $pkgs" >&2
    echo "genba setup: install them with: sudo apt-get install $pkgs" >&2
  fi
}

PY=$(find_python) || {
  echo "genba setup: error: no Python >= 3.12 found (tried \$GENBA_PYTHON, python3.14..python3, ~/.pyenv/versions);" \
       "install one (e.g. 'pyenv install 3.12' or 'apt-get install python3.12-venv') or set GENBA_PYTHON=/path/to/python" >&2
  exit 1
}

install_system_packages

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
  echo "genba setup: creating $VENV with $PY ($("$PY" --version 2>&1))"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
# uv resolves and installs the ~7 GB of wheels (torch with CUDA, which also runs on CPU) in well under a minute.
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "uv>=0.5"
echo "genba setup: installing genba and its dependencies into $VENV"
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" -e ".[dev]" -e plugins/lerobot_env_genba
touch "$STAMP"
echo "genba setup: done ($("$VENV/bin/python" --version))"
