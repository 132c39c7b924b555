"""The live view's web server: aiohttp in a thread of its own, one WebSocket per page.

A page gets the run's static description once (network shapes, cameras, tiers) and then the
latest update about 2.5 times a second; a page that connects late, or after the run ended, gets the
latest update at once. The producer (the demo's loop or ``tierpipe run``) only hands dicts over
with :meth:`ViewServer.publish`: serialising and sending happen on the server's thread, and a
slow page never blocks the pipeline (it just misses intermediate updates).

>>> server = ViewServer(port=0)
>>> url = server.start()          # doctest: +SKIP
>>> server.set_static({"title": "t", "mode": "run", "network": None, "cameras": [], "tiers": {}})
>>> server.publish({"phase": "starting"})
>>> server.close()
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import numbers
import socket
import threading
from importlib.resources import files
from pathlib import Path

from partition.errors import TierpipeError

__all__ = ["ViewServer", "ViewError", "STATIC", "is_loopback", "to_json"]

log = logging.getLogger(__name__)

STATIC = Path(str(files("runtime.view") / "static"))  # the page: package data, no CDN


class ViewError(TierpipeError):
    """The view could not start: names the host and port and what to change."""


def to_json(value) -> str:
    """JSON a browser can parse: NaN and infinities (an empty percentile, a rate over no time) become null.

    >>> import numpy as np
    >>> to_json({"p99": float("nan"), "fps": [1.0, float("inf")], "n": np.float32("nan")})
    '{"p99": null, "fps": [1.0, null], "n": null}'
    """
    try:
        return json.dumps(value, allow_nan=False, default=float)
    except ValueError:  # rare: clean the whole document once
        return json.dumps(_finite(value), default=float)


def _finite(value):
    if isinstance(value, numbers.Real) and not isinstance(value, (int, bool)):  # float, numpy floats
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, numbers.Integral) and not isinstance(value, (int, bool)):  # numpy integers
        return int(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1`` and ``localhost`` are loopback: only this machine reaches them.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ViewServer:
    """Serve the live page on ``http://host:port/`` until :meth:`close`.

    Args:
        host: where to listen; loopback by default (anything else exposes the run, unauthenticated).
        port: 0 takes any free port (the URL says which).
        interval_s: the shortest time between two updates sent to a page.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, interval_s: float = 0.25) -> None:
        self.host, self.port, self.interval_s = host, port, interval_s
        self._static: dict = {}
        self._latest: dict | None = None  # the newest update, as handed over (serialised on the server thread)
        self._version = 0  # bumps with every publish()
        self._static_version = 0  # bumps with every set_static()
        self._clients: set = set()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.sent = 0  # updates broadcast to the connected pages

    @property
    def url(self) -> str:
        """Where a browser finds the page (for a wildcard bind, this machine's name)."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/"

    # ------------------------------------------------------------------ producer side
    def set_static(self, static: dict) -> None:
        """What does not change during the run (or rarely: the tiers once the plan is made); sent to every
        page when it connects, and again to every connected page when it is set again."""
        self._static = static
        self._static_version += 1

    def publish(self, update: dict) -> None:
        """The newest update (a fresh dict each time: the server thread reads it later)."""
        self._latest = update
        self._version += 1

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 10.0) -> str:
        """Start serving; returns the URL.

        Raises:
            ViewError: the port is taken or the host cannot be bound.
        """
        self._thread = threading.Thread(target=self._serve, name="tierpipe-view", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.close()
            raise ViewError(f"the view did not start on {self.host}:{self.port} within {timeout_s:.0f} s")
        if self._error is not None:
            raise ViewError(
                f"the view cannot listen on {self.host}:{self.port} ({self._error}); "
                "give another --view-port (0: any free port) or --view-host"
            ) from None
        return self.url

    def close(self) -> None:
        """Stop serving and close every page's connection."""
        if self._loop is not None and self._stop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            if self._thread.is_alive():
                log.warning("the live view's server thread did not stop within 5 s (a daemon thread: it ends with the process)")
        self._thread = None

    def __enter__(self) -> ViewServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ server thread
    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # a bind error: start() reports it
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _main(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/", self._index)
        app.router.add_get("/ws", self._socket)
        app.router.add_get("/state", self._state)
        app.router.add_static("/static/", STATIC)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self.port = runner.addresses[0][1]
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._broadcast()
        finally:
            for ws in list(self._clients):
                await ws.close()
            await runner.cleanup()

    async def _index(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC / "index.html")

    async def _state(self, request):
        """The static part and the latest update as one JSON document (for scripts and tests)."""
        from aiohttp import web

        return web.Response(
            text=to_json({"static": self._static, "update": self._latest, "sent": self.sent}), content_type="application/json"
        )

    async def _socket(self, request):
        from aiohttp import WSMsgType, web

        ws = web.WebSocketResponse(heartbeat=10.0)
        await ws.prepare(request)
        try:
            greeted = self._static_version
            await ws.send_str(to_json({"type": "static", **self._static}))
            if self._latest is not None:
                await ws.send_str(to_json({"type": "update", **self._latest}))
            self._clients.add(ws)
            if self._static_version != greeted:  # set again while this page was greeted: the broadcast may have missed it
                await ws.send_str(to_json({"type": "static", **self._static}))
                if self._latest is not None:
                    await ws.send_str(to_json({"type": "update", **self._latest}))
            async for msg in ws:  # pages send nothing; this waits for the close
                if msg.type == WSMsgType.ERROR:
                    break
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(ws)
        return ws

    async def _broadcast(self) -> None:
        sent_version, static_version, static_at = 0, self._static_version, 0.0
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.interval_s)
            except asyncio.TimeoutError:
                pass
            try:
                # the static part when it changed, and every 5 s anyway (a page that missed a change catches up)
                if self._static_version != static_version or loop.time() - static_at > 5.0:
                    static_version, static_at = self._static_version, loop.time()
                    if self._clients:  # the static part, then the latest update again
                        sent_version = 0
                        await self._send(to_json({"type": "static", **self._static}))
                version, latest = self._version, self._latest
                if latest is None or version == sent_version or not self._clients:
                    continue
                sent_version = version
                await self._send(to_json({"type": "update", **latest}))
                self.sent += 1
            except Exception:  # one bad update must not end the page: say so and go on with the next
                log.exception("the live view could not send an update")

    async def _send(self, text: str) -> None:
        for ws in list(self._clients):
            try:
                await ws.send_str(text)
            except (ConnectionResetError, RuntimeError):  # a page that went away mid-send
                self._clients.discard(ws)
