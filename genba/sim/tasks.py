"""`genba tasks`: list the simulated tasks, one line each, with their gymnasium ids and example instructions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TasksConfig:
    out: str | None = field(default=None, metadata={"help": "summary path (.json) or directory; default outputs/"})


def run_tasks(cfg: TasksConfig) -> dict:
    from genba.sim import GYM_IDS, TASKS
    from genba.sim.scene import MAX_STEPS, sample_spec

    tasks = []
    for name, description in TASKS.items():
        print(f"{name:<12} {description}")
        tasks.append(
            {
                "name": name,
                "id": GYM_IDS[name],
                "description": description,
                "max_episode_steps": MAX_STEPS[name],
                "example_instruction_en": sample_spec(name, 0, "en")["instruction"],
                "example_instruction_ja": sample_spec(name, 0, "ja")["instruction"],
            }
        )
    return {"tasks": tasks}
