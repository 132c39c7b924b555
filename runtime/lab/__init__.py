"""A lab on this machine: one network namespace per topology node (or per group of nodes), each with
an address in 198.18.0.0/15, an sshd, a CPU quota for its tier's speed, and veth links shaped to the
topology's bandwidth. ``tierpipe lab up|status|down``; Linux and root.

- ``plan.py``: what a lab is made of, computed from a topology (no root, no side effects);
- ``netns.py``: the ``ip``/``tc``/``sshd``/cgroup commands, errors naming the command;
- ``build.py`` makes a lab, ``teardown.py`` removes exactly what it made, ``status.py`` reads it back;
- ``driver.py``: a driver on the lab joins the head host's network namespace;
- ``state.py``: the record of what was made; ``labfile.py``: the topology whose hosts are the lab.

Names are imported on first use: ``tierpipe --help`` reads none of this.
"""

from partition.lazy import lazy_exports

_WHERE = {
    "LabPlan": "plan",
    "LabHost": "plan",
    "LinkShape": "plan",
    "plan_lab": "plan",
    "lab_up": "build",
    "lab_down": "teardown",
    "host_status": "status",
    "lab_topology": "labfile",
    "LabState": "state",
    "enter_head_namespace": "driver",
}

__all__ = list(_WHERE)


__getattr__, __dir__ = lazy_exports(__name__, _WHERE)
