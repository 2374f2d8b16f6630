# The README's two commands. Each does the whole set-up first; a second run with nothing changed skips it.
VENV := .venv
STAMP := $(VENV)/.genba-installed
export MUJOCO_GL ?= egl
# Some machines set this; then every test process recompiles torch's and lerobot's bytecode (~20 s each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test lint setup clean

demo: $(STAMP)
	$(VENV)/bin/genba demo

test: $(STAMP) lint
	bash scripts/setup_openpi_client.sh  # the serving tests drive the real openpi-client from its own venv
	$(VENV)/bin/python -m pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

setup: $(STAMP)

$(STAMP): pyproject.toml plugins/lerobot_env_genba/pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

clean:
	rm -rf $(VENV) .venv-openpi-client outputs .pytest_cache
