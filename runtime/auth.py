"""The cluster token: made once on this machine, copied to every host, presented by every client.

``RAY_AUTH_MODE=token`` on every node reads it from ``~/.tierpipe/ray_token`` (``TIERPIPE_TOKEN_PATH``
elsewhere); a process without it is refused by the cluster ("InvalidAuthToken").
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

__all__ = ["token_path", "ensure_token", "auth_env", "use_token", "reset_token_cache", "write_private"]

log = logging.getLogger(__name__)


def token_path() -> Path:
    return Path(os.environ.get("TIERPIPE_TOKEN_PATH", "~/.tierpipe/ray_token")).expanduser()


def ensure_token(path: Path | None = None) -> str:
    """The cluster token, created (32 random bytes, hex, mode 600) when there is none."""
    path = path or token_path()
    if path.exists() and path.read_text().strip():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32)
    write_private(path, token.encode())
    log.info("created a new cluster token at %s", path)
    return token


def write_private(path: Path, data: bytes) -> None:
    """Write a secret: the file is created with mode 600 (never readable by others, not even for a moment)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def auth_env(path: Path | None = None) -> dict[str, str]:
    """Environment for a client of a tierpipe cluster: token mode with our token file."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path or token_path())}


def use_token(path: Path | None = None, override: bool = False) -> None:
    """Make this process a client of a tierpipe cluster: token mode with our token file.

    Ray caches the token it loaded first in the process; the cache is reset so a
    process that used another Ray before (tests, notebooks) presents the right token.
    """
    for key, value in auth_env(path).items():
        if override or key not in os.environ:
            os.environ[key] = value
    reset_token_cache()


def reset_token_cache() -> None:
    """Forget the token Ray loaded in this process (it is read again on the next connection)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # re-read RAY_AUTH_MODE, as Ray itself does
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # older or newer Ray without the cache: nothing to reset
        pass
