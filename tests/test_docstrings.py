"""The usage examples at the top of the modules users start from run as written (against a local server where they
need one)."""

import ast
import importlib
import textwrap

import pytest

MODULES = [
    "genba.policies.contract",
    "genba.policies.registry",
    "genba.policies.rollout",
    "genba.serving.remote",
    "genba.serving.robot_client",
    "genba.sim",
]


def examples(module: str) -> list[str]:
    """The indented blocks of a module's docstring, each dedented."""
    with open(importlib.import_module(module).__file__, encoding="utf-8") as f:
        doc = ast.get_docstring(ast.parse(f.read()), clean=False) or ""
    blocks, current = [], []
    for line in doc.splitlines():
        if line.startswith("    ") or (current and not line.strip()):
            current.append(line)
        elif current:
            blocks.append(textwrap.dedent("\n".join(current)))
            current = []
    blocks.append(textwrap.dedent("\n".join(current)))
    return [b for b in blocks if b.strip()]


@pytest.fixture(scope="module")
def server_url():
    from genba.policies.registry import policy_factory
    from genba.serving.app import PolicyServer, ServerThread

    with ServerThread(PolicyServer(policy_factory("linear", horizon=10), port=0)) as server:
        yield server.url


@pytest.mark.parametrize("module", MODULES)
def test_module_examples_run(module, server_url):
    blocks = examples(module)
    assert blocks, f"{module} has no usage example"
    for block in blocks:
        exec(compile(block.replace("ws://127.0.0.1:8000", server_url), f"<{module} docstring>", "exec"), {})
