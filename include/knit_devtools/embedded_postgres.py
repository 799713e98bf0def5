"""A throwaway PostgreSQL server on 127.0.0.1, built from the binaries of the ``pgserver`` wheel.

``pgserver.get_server`` only listens on a Unix socket; the receiver, Airflow connections and
docker-like URLs want TCP, and the fault tests need to crash and restart the server, so this
module drives ``initdb``/``pg_ctl`` itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pgserver._commands import POSTGRES_BIN_PATH

_RUN_AS = "pgserver"  # Postgres refuses to run as root; pgserver's user is reused.


def free_port() -> int:
    """Ask the kernel for a free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_for_user(path: Path) -> None:
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(_RUN_AS)
    assert entry is not None
    ensure_prefix_permissions(path)
    ensure_prefix_permissions(POSTGRES_BIN_PATH)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    os.chown(path, entry.pw_uid, entry.pw_gid)


class EmbeddedPostgres:
    """One server, one data directory; ``start``/``stop``/``crash`` may be called repeatedly."""

    def __init__(self, data_dir: Path | None = None, port: int | None = None, *, fsync: bool = True) -> None:
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="knit-pg-")).resolve()
        self.port = port or free_port()
        self.fsync = fsync

    # -- lifecycle -----------------------------------------------------------------------------
    def _run(self, exe: str, *args: str, timeout: float = 60) -> None:
        cmd = [str(POSTGRES_BIN_PATH / exe), *args]
        subprocess.run(
            cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
            user=_RUN_AS if _as_root() else None,
        )

    def _ensure_initialized(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _as_root():
            _prepare_for_user(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data_dir), "--auth=trust", "--encoding=utf8", "-U", "postgres")

    def start(self) -> EmbeddedPostgres:
        """Start (initializing the data directory on first use) and wait until it accepts connections."""
        self._ensure_initialized()
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c max_connections=200 "
            f"-c fsync={'on' if self.fsync else 'off'} -c shared_buffers=256MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            options,
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode="immediate"`` is a crash: no shutdown checkpoint, recovery on start."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-w", "-m", mode, "stop")

    def crash(self) -> None:
        self.stop("immediate")

    def close(self) -> None:
        """Stop and, when the data directory was a temporary one, remove it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- access --------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """Create a database (dropping any earlier one of that name) and return its URL."""
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)
