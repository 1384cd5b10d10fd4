"""A PostgreSQL server of the test's own (initdb into a temporary directory, a free port), so a test or benchmark
can stop, kill or restart it `-m immediate` without touching the machine's shared server."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.workers import free_port


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    if not found:
        raise RuntimeError("No PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return Path(found[-1])


class PrivatePostgres:
    def __init__(self) -> None:
        self.port = free_port()
        # Not under pytest's tmp_path: that is private to root, and initdb refuses to run as root.
        self.root = Path(tempfile.mkdtemp(prefix="nl-pg-"))
        self.data = self.root / "data"
        self.bin = _bin_dir()
        self._user = "postgres" if os.geteuid() == 0 else None
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([str(self.bin / args[0]), *args[1:]], user=self._user, cwd=self.root, check=check,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://root@127.0.0.1:{self.port}/{database}"

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "root", "-A", "trust", "-E", "UTF8", "--no-sync")
        # fsync off: a killed server (not a lost machine) keeps every committed write in the OS cache, so
        # -m immediate restarts stay honest crash recoveries while the disk is spared.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200 -c shared_buffers=64MB")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "start")
        return self

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.admin_url(name)

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart_immediate(self) -> None:
        """What `pg_ctlcluster ... restart -m immediate` does: no checkpoint, crash recovery on start."""
        self.stop("immediate")
        self.start()

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
