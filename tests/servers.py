"""Throwaway PostgreSQL and Redis servers from Debian's packages, on loopback, for scale-out tests.

Each server lives in its own temporary directory and port and is stopped (and its data removed)
when the context exits. PostgreSQL refuses to run as root, so as root it runs as ``postgres``.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["free_port", "postgres_available", "redis_available", "postgres_server", "redis_server"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def postgres_available() -> bool:
    return _pg_bin() is not None


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def _wait_port(port: int, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s\n{tail}")


@dataclass(frozen=True)
class PostgresInfo:
    host: str
    port: int
    user: str
    password: str
    db: str


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(db: str = "rasa") -> Iterator[PostgresInfo]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian package postgresql)")
    root = Path(tempfile.mkdtemp(prefix="emotune-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port, user, password = free_port(), "emotune", "emotune-test"
    pwfile = root / "pw"
    pwfile.write_text(password)
    if os.geteuid() == 0:
        shutil.chown(pwfile, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", user, "--pwfile", str(pwfile),
                      "-A", "md5", "--no-sync"]),
        check=True, capture_output=True,
    )
    command = _as_postgres([str(bin_dir / "postgres"), "-D", str(data), "-p", str(port), "-h", "127.0.0.1",
                            "-k", str(root), "-c", "fsync=off"])  # fmt: skip
    with _running(command, root, port, "postgres", wait_s=30):
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", user, db],
            check=True, capture_output=True, env={**os.environ, "PGPASSWORD": password},
        )
        yield PostgresInfo("127.0.0.1", port, user, password, db)


@contextmanager
def redis_server() -> Iterator[int]:
    if not redis_available():
        raise RuntimeError("Redis is not installed (Debian package redis-server)")
    root = Path(tempfile.mkdtemp(prefix="emotune-redis-"))
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(root)]  # fmt: skip
    with _running(command, root, port, "redis", wait_s=15):
        yield port


@contextmanager
def _running(command: list[str], root: Path, port: int, name: str, wait_s: float) -> Iterator[None]:
    """Start a server logging to ``root``, wait for its port; always stop it and remove ``root``."""
    log = root / f"{name}.log"
    proc = subprocess.Popen(command, stdout=open(log, "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115 - closed with the process
    try:
        _wait_port(port, wait_s, name, log)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)
