"""A PostgreSQL cluster of a test's own, to stop and resume (SIGSTOP/SIGCONT).

Debian's server binaries (``/usr/lib/postgresql/*/bin``), as ``tests/run.sh``
uses them; run as the ``postgres`` user when the tests run as root. The
cluster listens on a free loopback port and is removed afterwards.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path


class NoPostgres(Exception):
    pass


def find_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]))
    for path in reversed(found):
        if os.access(f"{path}/initdb", os.X_OK) and os.access(f"{path}/pg_ctl", os.X_OK):
            return Path(path)
    raise NoPostgres("no PostgreSQL server binaries in /usr/lib/postgresql/*/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        self.bin = find_bin()
        self.dir = Path(tempfile.mkdtemp(prefix="dialer-pg-stall."))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres")
        self.url = f"postgresql+psycopg://dialer@127.0.0.1:{self.port}/postgres"
        self.stopped: list[int] = []

    def _as_pg(self, *cmd: str) -> None:
        argv = [*(["runuser", "-u", "postgres", "--"] if self.root else []), *cmd]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, timeout=120)

    def start(self) -> "Cluster":
        self._as_pg(str(self.bin / "initdb"), "-D", str(self.data), "-U", "dialer", "--auth=trust",
                    "-E", "UTF8")
        self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-w",
                    "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off",
                    "start")
        return self

    def pids(self) -> list[int]:
        """The postmaster and every process it started (backends included)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        out = [postmaster]
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                out.append(int(stat.split("/")[2]))
        return out

    def pause(self) -> None:
        """SIGSTOP the postmaster and its backends: the server stops answering
        (the kernel still accepts connections and acknowledges bytes)."""
        self.stopped = []
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:  # a backend that just exited
                continue
            self.stopped.append(pid)

    def resume(self) -> None:
        for pid in self.stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.stopped = []

    def cleanup(self) -> None:
        self.resume()
        try:
            self._as_pg(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        except Exception:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)
