"""The policy contract: every policy genba runs, serves or evaluates is a `Policy`.

    import numpy as np
    from genba.policies.spec import ActionSpec, Feature, InputSpec

    class StayPut:
        input_spec = InputSpec({"observation.state": Feature("float32", (6,))})
        action_spec = ActionSpec(horizon=16, dim=6, fps=10)

        def reset(self) -> None:  # a new episode starts
            pass

        def infer(self, obs: dict) -> dict:  # {"actions": (H, A) float32}
            return {"actions": np.repeat(obs["observation.state"][None], 16, axis=0)}

A complete one to copy: examples/user_policy.py.

Observations use LeRobot's feature names (genba.keys): `observation.state` (S,), `observation.images.<camera>`
(H, W, 3) uint8, `observation.environment_state` (E,), `task` (the instruction). The loop (genba.policies.rollout)
and the server give a policy only the keys its `input_spec` lists, already checked against it.

Optional: `infer_batch(list of obs) -> list of results` (the server batches concurrent clients with it; without it
the server calls `infer` once per request) and `name` (shown in logs and summaries). Whether a served policy is
shared by all clients or built once per connection is the server's setting, not the policy's (`genba serve
per_connection=`).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.policies.spec import ActionSpec, InputSpec


@runtime_checkable
class Policy(Protocol):
    input_spec: InputSpec
    action_spec: ActionSpec

    def reset(self) -> None: ...

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]: ...  # {"actions": (H, A) float32}


def policy_name(policy: Any) -> str:
    return str(getattr(policy, "name", type(policy).__name__))


def infer_batch(policy: Policy, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
    """The policy's own `infer_batch` when it has one, else one `infer` per observation."""
    fn = getattr(policy, "infer_batch", None)
    return fn(batch) if callable(fn) else [policy.infer(o) for o in batch]


def check_policy(policy: Any) -> Policy:
    """`policy` if it meets the contract; otherwise a one-line GenbaError naming what is missing."""
    missing = [a for a in ("input_spec", "action_spec", "reset", "infer") if not hasattr(policy, a)]
    if missing:
        raise GenbaError(f"{policy_name(policy)} is not a genba policy: it has no {', '.join(missing)} "
                         "(see genba.policies.contract)")  # fmt: skip
    if not isinstance(policy.input_spec, InputSpec) or not isinstance(policy.action_spec, ActionSpec):
        raise GenbaError(f"{policy_name(policy)}: input_spec must be an InputSpec and action_spec an ActionSpec "
                         "(genba.policies.spec)")  # fmt: skip
    return policy


def check_actions(result: Any, spec: ActionSpec) -> np.ndarray:
    """The (H, A) float32 actions of one `infer` result; ValueError when they are not fit for a motor."""
    raw = result.get(keys.ACTIONS) if isinstance(result, dict) else None
    try:
        actions = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError):
        actions = np.zeros(0, np.float32)
    if raw is None or actions.ndim != 2 or actions.shape[1] != spec.dim or len(actions) == 0:
        raise ValueError(f"policy returned no (H, {spec.dim}) actions")
    if not np.isfinite(actions).all():
        raise ValueError("policy returned non-finite actions")  # never forward NaN to a motor
    return actions
