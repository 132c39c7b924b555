"""What the demo's page and the run's page share: the first state, the announcement, staying up until Ctrl-C."""

from __future__ import annotations

import time

from .server import ViewServer, is_loopback

__all__ = ["first_state", "announce", "hold"]


def first_state(status: str) -> dict:
    """An update with nothing measured yet (the protocol's every key, empty)."""
    return {"phase": "starting", "status": status, "sim": None, "vehicles": [], "signals": {}, "cameras": []} | {
        "pipeline": None,
        "series": {"delay": {}},
        "final": None,
    }


def announce(server: ViewServer, console, what: str) -> None:
    """Print the page's URL, and a warning when it listens beyond this machine."""
    console.print(f"live view at {server.url}")
    if not is_loopback(server.host):
        console.print(
            f"[yellow]warning:[/yellow] the view listens on {server.host}: anyone who can reach that address "
            f"sees {what} (there is no login)"
        )


def hold(server: ViewServer, console) -> None:
    """Keep the page up with the final figures until Ctrl-C, then stop it."""
    console.print(f"the live view stays up at {server.url} with the final figures; Ctrl-C to stop")
    try:
        while True:
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("view stopped")
    finally:
        server.close()
