"""The record of what ``lab up`` made, written after every step, so that ``lab down`` removes exactly
that (even after an ``up`` that failed half-way) and nothing else.

``~/.tierpipe/lab/`` (or ``$TIERPIPE_LAB_DIR``) holds:

- ``state.json``: the plan and the list of things made, in the order they were made;
- ``keys/``: the lab's ssh key pair and host key. They are made once and kept by ``lab down``
  (``--purge-keys`` removes them), so that an ssh client that has seen the lab (known_hosts) meets
  the same host key on the next lab;
- ``hosts/<host>/``: each sshd's config, pid file and log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LabError
from .plan import LabPlan

__all__ = ["lab_dir", "Made", "LabState", "KINDS"]

# what a lab makes, in the order `lab down` removes it
KINDS = ("process", "cgroup", "netns", "link", "route", "file", "dir")


def lab_dir(given: str | Path | None = None) -> Path:
    return Path(given or os.environ.get("TIERPIPE_LAB_DIR") or "~/.tierpipe/lab").expanduser().absolute()


@dataclass(frozen=True)
class Made:
    """One thing ``lab up`` made: a process (pid and start time), a cgroup (path), a namespace, a link
    (in ``netns``, None: the root namespace), a route in the root namespace, a file or a folder."""

    kind: str
    name: str
    netns: str | None = None
    pid: int | None = None
    start: int | None = None  # process start time, clock ticks since boot: the pid alone may be reused

    def __str__(self) -> str:
        if self.kind == "process":
            return f"process {self.pid} ({self.name})"
        return f"{self.kind} {self.name}" + (f" in {self.netns}" if self.netns else "")


@dataclass
class LabState:
    """The lab on this machine: its plan, what was made, how the machine answered."""

    path: Path  # state.json
    plan: LabPlan
    cgroup_version: int
    cgroup_root: str
    netem: bool = False
    made: list[Made] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # made by this up, kept by down unless purged (keys)
    up: bool = False  # every step done

    def add(self, item: Made) -> None:
        """Record ``item`` and save: called right before it is made, so a crash leaves it recorded."""
        self.made.append(item)
        self.save()

    def save(self) -> None:
        data = {
            "plan": self.plan.to_dict(),
            "cgroup_version": self.cgroup_version,
            "cgroup_root": self.cgroup_root,
            "netem": self.netem,
            "made": [m.__dict__ for m in self.made],
            "kept": self.kept,
            "up": self.up,
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        """The state at ``path``; None when there is none (no lab).

        Raises:
            LabError: the file is not a lab state (names the file and the fix).
        """
        if not path.exists():
            return None
        try:
            d = json.loads(path.read_text())
            return cls(
                path=path,
                plan=LabPlan.from_dict(d["plan"]),
                cgroup_version=d["cgroup_version"],
                cgroup_root=d["cgroup_root"],
                netem=d["netem"],
                made=[Made(**m) for m in d["made"]],
                kept=list(d.get("kept", [])),
                up=d.get("up", False),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LabError(
                f"{path}: not a lab state file ({type(exc).__name__}: {exc}); it records what `lab up` made, "
                "so remove the lab's namespaces (`ip netns list`) by hand and then the file"
            ) from None
