"""The flooding AMI server the AMI benchmarks share, run in a process of its own.

It logs each client in (any user, any secret) and writes a realistic event mix
(``bench_ami_parse.make_stream``) as fast as the socket takes it: once, then it
answers the client's Logoff (``repeat=False``), or over and over until the
client hangs up (``repeat=True``). A connection that sends ``QUIT`` ends it.

    with flood_server(__file__, ["--serve-flood", "--events", "1000"]) as port: ...

runs the calling script again with those arguments, and the script calls
:func:`serve` when it sees them.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path


def _action_id(block: bytes) -> bytes:
    for line in block.split(b"\r\n"):
        if line.lower().startswith(b"actionid:"):
            return line.split(b":", 1)[1].strip()
    return b""


def _read_block(conn: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def serve(port_file: str, events: int, *, repeat: bool) -> None:
    """Listen on a free loopback port (written to ``port_file``) and flood each client."""
    from bench_ami_parse import make_stream

    banner, body = make_stream(events).split(b"\r\n", 1)
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    Path(port_file).write_text(str(listener.getsockname()[1]))
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                conn.sendall(banner + b"\r\n")
                login = _read_block(conn)
                if login.startswith(b"QUIT"):
                    return
                if not login:
                    continue
                conn.sendall(b"Response: Success\r\nActionID: " + _action_id(login)
                             + b"\r\nMessage: Authentication accepted\r\n\r\n")
                if repeat:
                    while True:
                        conn.sendall(body)
                conn.sendall(body)
                conn.settimeout(30)
                logoff = conn.recv(65536)  # Logoff, or the client closing
                if logoff:
                    conn.sendall(b"Response: Goodbye\r\nActionID: " + _action_id(logoff) + b"\r\n\r\n")
            except OSError:
                pass  # the client has what it wanted and left


@contextlib.contextmanager
def flood_server(script: str, args: list[str]) -> Iterator[int]:
    """Run ``script args... --port-file F`` (which calls :func:`serve`) and yield its port;
    stop it on the way out."""
    tmp = Path(tempfile.mkdtemp(prefix="flood_server."))
    port_file = tmp / "port"
    server = subprocess.Popen([sys.executable, script, *args, "--port-file", str(port_file)])
    try:
        deadline = time.monotonic() + 120
        while not port_file.exists() or not port_file.read_text():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("flood server did not start")
            time.sleep(0.05)
        yield int(port_file.read_text())
    finally:
        try:
            with socket.create_connection(("127.0.0.1", int(port_file.read_text())), timeout=5) as s:
                s.recv(100)
                s.sendall(b"QUIT\r\n\r\n")
        except (OSError, ValueError):
            pass
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        port_file.unlink(missing_ok=True)
        tmp.rmdir()
