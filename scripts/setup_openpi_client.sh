#!/usr/bin/env bash
# Give the unmodified `openpi-client` package from PyPI its own small virtual environment, .venv-openpi-client, for
# the serving tests (tests/serving drive it through a subprocess). It pins numpy<2, which lerobot (numpy>=2) cannot
# share a venv with. Installed the way its users install it: `pip install openpi-client==0.1.2`.
# Idempotent: a second run with the package already importable does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-openpi-client
VERSION=0.1.2
STAMP=$VENV/.openpi-client-$VERSION

if [ -f "$STAMP" ] && "$VENV/bin/python" -c "import openpi_client.websocket_client_policy" >/dev/null 2>&1; then
  exit 0
fi

# Any CPython >= 3.8 with the venv module will do (openpi-client 0.1.2 supports 3.7+; numpy<2 wheels exist up to 3.12).
# Prefer interpreters that have numpy 1.x wheels; pyenv shims fail unless selected, so each candidate is run.
find_python() {
  local c
  for c in ${GENBA_OPENPI_PYTHON:-} python3.11 python3.10 python3.12 python3.9 python3 python; do
    if "$c" -c "import sys, venv, ensurepip; sys.exit(0 if (3, 8) <= sys.version_info[:2] <= (3, 12) else 1)" \
      >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  local root="${PYENV_ROOT:-$HOME/.pyenv}" v
  if [ -d "$root/versions" ]; then
    for v in $(ls "$root/versions" | grep -E '^3\.(8|9|10|11|12)\.[0-9]+$' | sort -t. -k2,2nr); do
      if "$root/versions/$v/bin/python3" -c "import venv, ensurepip" >/dev/null 2>&1; then
        echo "$root/versions/$v/bin/python3"
        return 0
      fi
    done
  fi
  return 1
}

PY=$(find_python) || {
  echo "genba setup: no Python 3.8-3.12 with the venv module found for openpi-client" >&2
  echo "genba setup: install one (e.g. apt-get install python3-venv) or set GENBA_OPENPI_PYTHON" >&2
  exit 1
}

echo "genba setup: creating $VENV with $("$PY" --version 2>&1) for openpi-client==$VERSION"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
# openpi-client 0.1.2 imports typing_extensions without declaring it (its METADATA lists no such requirement), so a
# plain install cannot import; its users add it by hand, and so do we.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "openpi-client==$VERSION" "typing-extensions>=4"
"$VENV/bin/python" -c "import openpi_client.websocket_client_policy, numpy; print('openpi-client ok, numpy', numpy.__version__)"
touch "$STAMP"
