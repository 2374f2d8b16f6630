"""`genba tasks`: list the registered tasks (genba.sim.tasks), one line each, with gymnasium ids and instructions."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TasksConfig:
    out: str | None = field(default=None, metadata={"help": "summary path (.json) or directory; default outputs/"})


def run_tasks(cfg: TasksConfig) -> dict:
    from genba.sim.scene import sample_spec
    from genba.sim.tasks import TASKS

    tasks = []
    for name, task in TASKS.items():
        print(f"{name:<12} {task.description}")
        tasks.append(
            {
                "name": name,
                "id": task.gym_id,
                "description": task.description,
                "max_episode_steps": task.max_steps,
                "example_instruction_en": sample_spec(name, 0, "en")["instruction"],
                "example_instruction_ja": sample_spec(name, 0, "ja")["instruction"],
            }
        )
    return {"tasks": tasks}
