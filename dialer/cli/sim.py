"""``dialer sim``: run the simulated Asterisk until interrupted."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import TextIO

from dialer.errors import UserError

DEFAULT_LISTEN = "127.0.0.1:5038"


def register(subparsers, common) -> None:
    p = subparsers.add_parser(
        "sim", parents=[common],
        help="run a simulated Asterisk that speaks AMI",
        description="Run a simulated Asterisk 22 speaking AMI (Local channels, a carrier "
                    "simulation, an agents queue) until interrupted with Ctrl-C.",
    )
    p.add_argument("--listen", metavar="HOST:PORT", default=DEFAULT_LISTEN,
                   help=f"address to listen on (default {DEFAULT_LISTEN}; port 0 picks a free one)")
    p.add_argument("--scenario", metavar="FILE",
                   help="scenario TOML file, or 'demo' for the example scenario shipped with dialer"
                   " (default: the recording server's last-digit table)")
    p.add_argument("--speed", metavar="X", default="1",
                   help="divide every delay (ring, talk, queue) by X (default 1)")
    p.add_argument("--seed", metavar="N", help="random seed: the same seed gives the same calls")
    p.set_defaults(handler=run_sim)


def parse_listen(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\s\[\]]+):(\d+)", text.strip())
    if not m:
        raise UserError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if port > 65535:
        raise UserError(f"--listen {text!r}: port {port} is out of range (0-65535)")
    return host, port


def parse_speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        raise UserError(f"--speed {text!r}: expected a positive number") from None
    if not math.isfinite(speed) or speed <= 0:
        raise UserError(f"--speed {text!r}: must be a positive number")
    return speed


def parse_seed(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--seed {text!r}: expected an integer") from None


#: The example scenario, shipped inside the package (``--scenario demo``).
EXAMPLE_SCENARIO = Path(__file__).resolve().parents[1] / "sim" / "demo.toml"


def scenario_file(text: str) -> Path:
    """``--scenario``: a file, or ``demo`` (unless a file of that name exists here)."""
    path = Path(text)
    if text == "demo" and not path.exists():
        return EXAMPLE_SCENARIO
    return path


def describe(sim, host: str, port: int) -> list[str]:
    sc = sim.scenario
    shown = f"[{host}]" if ":" in host else host
    lines = [f"dialer sim: Asterisk Call Manager/11.0.0 (simulated Asterisk {sim.version}) "
             f"listening on {shown}:{port}"]
    for u in sc.users:
        read = ",".join(sorted(u.read)) or "(none)"
        write = ",".join(sorted(u.write)) or "(none)"
        lines.append(f"  user {u.name} / secret {u.secret}  read={read}  write={write}")
    if sc.probabilities is None:
        mode = "last digit of the number picks the outcome (0-3 answered, 4 busy, 5 congestion, " \
               "6 no answer, 7 short answer, 8 unallocated, 9 long call)"
    else:
        mode = "outcomes " + ", ".join(f"{k} {v:.0%}" for k, v in sc.probabilities.items())
    lines.append(f"  scenario {sc.source}: {mode}")
    q = sc.queue
    lines.append(f"  queue {q.name}: {q.agents} agents, {q.strategy}, caller timeout {q.timeout:g} s, "
                 f"wrap-up {q.wrapup:g} s; connect context {sc.connect_context}; "
                 f"channel capacity {sc.channel_capacity or 'unlimited'}; speed x{sim.speed:g}"
                 + (f"; seed {sim.seed}" if sim.seed is not None else ""))
    lines.append("  Ctrl-C stops it.")
    return lines


def run_sim(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    import trio

    from dialer.sim import SimAsterisk, load_scenario

    host, port = parse_listen(args.listen)
    speed = parse_speed(args.speed)
    seed = parse_seed(args.seed)
    scenario = load_scenario(scenario_file(args.scenario)) if args.scenario else None
    sim = SimAsterisk(scenario, speed=speed, seed=seed)

    failure: list[str] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                bound = await nursery.start(sim.serve, host, port)
            except OSError as exc:
                failure.append(f"--listen {args.listen}: cannot listen: {exc.strerror or exc}")
                return
            for line in describe(sim, host, bound):
                out.write(line + "\n")
            out.flush()

    interrupted = False
    try:
        trio.run(main)
    except* KeyboardInterrupt:
        interrupted = True
    if failure:
        raise UserError(failure[0])
    if interrupted:
        st = sim.statistics()
        out.write(f"dialer sim: stopped after {st['connections']} connections, "
                  f"{st['calls_total']} calls, {st['events_emitted']} events\n")
        out.flush()
    return 0
