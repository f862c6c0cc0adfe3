"""Which embedded-PostgreSQL data directory an `ordo` command uses, and one `ordo up` per directory.

Without DATABASE_URL, every `ordo` command finds its data the way git finds a repository:
ORDO_DATA_DIR if set; otherwise the nearest `.ordo/` directory in the current directory or one of its
parents; otherwise a new `.ordo/` in the current directory, which the command announces on stderr
before creating it (`ordo task list` run from the wrong directory says so instead of quietly showing
an empty, new database).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from store.errors import ConfigError

__all__ = ["NAME", "announce_if_new", "claim", "locate"]

NAME = ".ordo"
_LOCK = "ordo-up.lock"


def locate(cwd: Path, env: Mapping[str, str]) -> Path:
    """The data directory for a command started in `cwd` with environment `env` (absolute)."""
    explicit = env.get("ORDO_DATA_DIR")
    if explicit:
        return (cwd / explicit).resolve()
    for directory in (cwd, *cwd.parents):
        candidate = directory / NAME
        if candidate.is_dir():
            return candidate.resolve()
    return (cwd / NAME).resolve()


def announce_if_new(data_dir: Path) -> None:
    """Say so on stderr when the embedded server is about to be created in `data_dir`."""
    if not (data_dir / "pg").exists():
        sys.stderr.write(
            f"ordo: no data directory in use at {data_dir}; creating a new one there "
            f"(to use another, run from inside it or set ORDO_DATA_DIR)\n"
        )
        sys.stderr.flush()


@contextlib.contextmanager
def claim(data_dir: Path) -> Iterator[None]:
    """Hold the data directory for one `ordo up` while the block runs; ConfigError naming the other
    one's pid if it is already held. The lock dies with the process, however it ends."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"another `ordo up` (pid {holder}) already serves the data directory {data_dir}; "
                "stop it first, or add processes to it with `ordo worker` / `ordo api --port N`"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
