"""A counting TCP relay between AMI clients and an Asterisk, run as its own process.

``python tests/ami_relay.py UPSTREAM_PORT RECORD_FILE`` listens on a free
loopback port (printed as the first line of stdout), and for every client
it accepts opens a connection of its own to ``127.0.0.1:UPSTREAM_PORT`` and
copies the bytes both ways unchanged. It writes one line to RECORD_FILE for
every action a client sends (``C <connection> <epoch time> <Action>
<ActionID>``, timed by the kernel when its first byte arrived) and for every event Asterisk
sends a client (``E <connection> <time> <Event> <ActionID or ->``), so a test sees what each
connection actually put on the wire and read from it. Stops on SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dialer.ami.codec.message import Banner  # noqa: E402
from dialer.ami.codec.parser import NEED_DATA, AMIParser  # noqa: E402


class Recorder:
    def __init__(self, path: str) -> None:
        self.out = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def write(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")


#: Linux: the kernel's receive time of each segment (struct timespec, CLOCK_REALTIME)
SO_TIMESTAMPNS = 35


def pump_actions(src: socket.socket, dst: socket.socket, conn: int, rec: Recorder) -> None:
    """Client to Asterisk. Read one byte at a time so that the kernel's
    timestamp belongs to the segment each action began in: that is when the
    client's bytes reached the wire, however late this process gets to them."""
    src.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    parser = AMIParser(role="server", lazy=True)
    pending = bytearray()
    started: float | None = None
    try:
        while True:
            data, ancillary, _, _ = src.recvmsg(1, socket.CMSG_SPACE(16))
            if not data:
                break
            at = time.time()
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    at = sec + nsec / 1e9
            if started is None:
                started = at
            pending += data
            parser.receive_data(data)
            while (message := parser.next_event()) is not NEED_DATA:
                if not isinstance(message, Banner) and message.kind == "action":
                    rec.write(f"C {conn} {started:.6f} {message.name} {message.action_id}")
                dst.sendall(pending)
                pending.clear()
                started = None
    except OSError:
        pass
    finally:
        _close(src, dst)


def pump_events(src: socket.socket, dst: socket.socket, conn: int, rec: Recorder) -> None:
    """Asterisk to client, unchanged; every event noted."""
    parser = AMIParser(role="client", lazy=True)
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            at = time.time()
            dst.sendall(data)
            parser.receive_data(data)
            while (message := parser.next_event()) is not NEED_DATA:
                if not isinstance(message, Banner) and message.kind == "event":
                    rec.write(f"E {conn} {at:.6f} {message.name} {message.action_id or '-'}")
    except OSError:
        pass
    finally:
        _close(src, dst)


def _close(*socks: socket.socket) -> None:
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main() -> None:
    upstream = int(sys.argv[1])
    rec = Recorder(sys.argv[2])
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(listener.getsockname()[1], flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    conn = 0
    while True:
        client, _ = listener.accept()
        conn += 1
        server = socket.create_connection(("127.0.0.1", upstream))
        for target, src, dst in ((pump_actions, client, server), (pump_events, server, client)):
            threading.Thread(target=target, args=(src, dst, conn, rec), daemon=True).start()


if __name__ == "__main__":
    main()
