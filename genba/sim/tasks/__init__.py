"""The registry of simulated tasks: TASKS is the one list; gym ids, CLI choices and `genba tasks` derive from it.

Adding a task = one module here (see genba.sim.tasks.task.Task for its parts) + one line below. Importing the
registry does not import MuJoCo (the CLI lists the task names for --help).
"""

from __future__ import annotations

from genba.errors import GenbaError
from genba.sim.tasks import pick_place, push, reach, stack
from genba.sim.tasks.task import Task

TASKS: dict[str, Task] = {
    "reach": reach.TASK,
    "push": push.TASK,
    "pick_place": pick_place.TASK,
    "stack": stack.TASK,
}

__all__ = ["TASKS", "Task", "get_task"]


def get_task(name: str) -> Task:
    """The registered task `name`; unknown names -> GenbaError listing the valid ones."""
    if name not in TASKS:
        raise GenbaError(f"unknown task {name!r} (valid: {', '.join(TASKS)})")
    return TASKS[name]
