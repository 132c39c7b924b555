"""Starting a local Ray of our own, and keeping Ray's chatter off the console."""

from __future__ import annotations

import contextlib
import logging
import os
import sys

__all__ = ["quiet_ray", "start_local_ray"]


@contextlib.contextmanager
def _stderr_muted(mute: bool):
    """Send file descriptor 2 to /dev/null for the duration (C++ output included)."""
    if not mute:
        yield
        return
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def quiet_ray() -> None:
    """Keep Ray's start-up chatter (worker-count warnings, core-worker notes) off the console.

    Call before Ray starts; ``TIERPIPE_DEBUG=1`` keeps it all."""
    if os.environ.get("TIERPIPE_DEBUG") == "1":
        return
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.getLogger("ray").setLevel(logging.ERROR)


def start_local_ray(actors: int, chatty: bool = False) -> None:
    """A new local Ray for this process (never a cluster found on the machine or in RAY_ADDRESS)."""
    import ray

    # one worker process per stage actor: let the raylet start them all at once, not two at a time
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(max(actors, 8)))
    chatty = chatty or os.environ.get("TIERPIPE_DEBUG") == "1"
    if not chatty:
        quiet_ray()  # a Python user gets the CLI's quiet console too: Ray's C++ notes stay in its logs
    with _stderr_muted(not chatty):  # Ray's C++ core prints a log-level note while it starts
        ray.init(
            address="local",
            num_cpus=max(os.cpu_count() or 2, 2),
            include_dashboard=False,
            logging_level=logging.WARNING if chatty else logging.ERROR,
            log_to_driver=chatty,
        )
