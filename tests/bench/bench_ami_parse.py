"""AMI parse throughput: dialer.ami.codec against the naive split loop, in the same run.

Usage: .venv/bin/python tests/bench/bench_ami_parse.py [--runs N] [--messages N] [--worst-mb N]
           [--baseline PATH]

Prints one JSON object per line: one per run and mode, then a summary with the
medians. Rates are per CPU second of this process (``time.process_time``), so
that other load on the machine does not skew the comparison; wall-clock rates
are printed per run too. The stream is a realistic mix (about half VarSet, the rest call events
of 15-30 header lines), fed in random chunks of 1-8192 bytes. Modes:

* ``naive_str_dict``: the naive loop as usually written: chunks decoded into a str
  buffer, ``buffer.split('\\r\\n\\r\\n', 1)``, a dict of every header
* ``naive_split_name``: ``buf.split(b"\\r\\n\\r\\n", 1)`` loop, event name from the first line
* ``naive_split_dict``: the same loop building a dict of every header (the usual naive client)
* ``codec_dispatch``: AMIParser framing + ``message.name`` (headers left unparsed),
  one ``next_event()`` call per message
* ``codec_dispatch_batch``: the same with ``next_events()`` (a list per call)
* ``codec_full``: AMIParser framing + every header parsed (``items()``)
* ``codec_eager``: ``AMIParser(lazy=False)``: headers parsed inside next_event

Then the worst case: one message of ``--worst-mb`` MB delivered one byte at a time.

With ``--baseline PATH`` (a source tree of an older commit, e.g. from
``git archive``) each run is made once with this tree's codec and once with
the baseline's, alternately, each in a fresh process; the summary gives the
medians of both and their ratio (see ``baseline.py``); the worst case is run
once per run and tree.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baseline import compare, tree_root  # noqa: E402

sys.path.insert(0, str(tree_root()))

# Through the package's front, so that a baseline tree with another module
# layout runs too.
from dialer.ami import NEED_DATA, AMIParser, encode_message  # noqa: E402


def make_stream(n: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    parts = [b"Asterisk Call Manager/11.0.0\r\n"]
    names = ["Newchannel", "Newstate", "Newexten", "DialBegin", "DialEnd", "Hangup",
             "BridgeEnter", "BridgeLeave", "QueueCallerJoin", "AgentConnect", "OriginateResponse"]
    for i in range(n):
        uid = f"1795720670.{i // 20}"
        chan = f"Local/1555123{i // 20:04d}@carrier-{i // 20:08x};1"
        common = [
            ("Privilege", "call,all"), ("Timestamp", f"1795720670.{rng.randrange(10**6):06d}"),
            ("Channel", chan), ("ChannelState", "6"), ("ChannelStateDesc", "Up"),
            ("CallerIDNum", "15551230000"), ("CallerIDName", "<unknown>"),
            ("ConnectedLineNum", "<unknown>"), ("ConnectedLineName", "<unknown>"),
            ("Language", "en"), ("AccountCode", ""), ("Context", "dialer-connect"),
            ("Exten", "s"), ("Priority", "1"), ("Uniqueid", uid), ("Linkedid", uid),
        ]
        if rng.random() < 0.5:
            headers = [("Event", "VarSet")] + common + [
                ("Variable", rng.choice(["BRIDGEPEER", "QUEUEPOSITION", "DIALSTATUS", "LEADID"])),
                ("Value", f"value-{rng.randrange(1000)}"),
            ]
        else:
            extra = [(f"Dest{k}", v) for k, v in common[2:2 + rng.randint(0, 12)]]
            headers = [("Event", rng.choice(names))] + common + extra
        parts.append(encode_message(headers))
    return b"".join(parts)


def chunked(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 8192)
        out.append(data[i:i + n])
        i += n
    return out


def naive_split_name(chunks):
    buf = b""
    count = 0
    names = {}
    for chunk in chunks:
        buf += chunk
        while b"\r\n\r\n" in buf:
            msg, buf = buf.split(b"\r\n\r\n", 1)
            first = msg.split(b"\r\n", 1)[0]
            name = first.split(b": ", 1)[1].decode() if b": " in first else None
            names[name] = names.get(name, 0) + 1
            count += 1
    return count


def naive_str_dict(chunks):
    """The naive loop as usually written: a str buffer, split('\\r\\n\\r\\n', 1), a dict."""
    buf = ""
    count = 0
    names = {}
    for chunk in chunks:
        buf += chunk.decode("utf-8", "ignore")
        while "\r\n\r\n" in buf:
            msg, buf = buf.split("\r\n\r\n", 1)
            headers = {}
            for line in msg.split("\r\n"):
                key, _, value = line.partition(": ")
                headers.setdefault(key, value)
            name = headers.get("Event") or headers.get("Response")
            names[name] = names.get(name, 0) + 1
            count += 1
    return count


def naive_split_dict(chunks):
    buf = b""
    count = 0
    names = {}
    for chunk in chunks:
        buf += chunk
        while b"\r\n\r\n" in buf:
            msg, buf = buf.split(b"\r\n\r\n", 1)
            headers = {}
            for line in msg.decode("utf-8", "replace").split("\r\n"):
                key, _, value = line.partition(": ")
                headers.setdefault(key, value)
            name = headers.get("Event") or headers.get("Response")
            names[name] = names.get(name, 0) + 1
            count += 1
    return count


def codec_dispatch(chunks, lazy=True):
    parser = AMIParser(lazy=lazy)
    count = 0
    names = {}
    next_event = parser.next_event
    receive = parser.receive_data
    for chunk in chunks:
        receive(chunk)
        while (event := next_event()) is not NEED_DATA:
            name = getattr(event, "name", None)
            names[name] = names.get(name, 0) + 1
            count += 1
    return count


def codec_dispatch_batch(chunks):
    parser = AMIParser()
    count = 0
    names = {}
    next_events = parser.next_events
    receive = parser.receive_data
    for chunk in chunks:
        receive(chunk)
        while events := next_events():
            for event in events:
                name = getattr(event, "name", None)
                names[name] = names.get(name, 0) + 1
                count += 1
    return count


def codec_full(chunks):
    parser = AMIParser()
    count = 0
    names = {}
    next_event = parser.next_event
    receive = parser.receive_data
    for chunk in chunks:
        receive(chunk)
        while (event := next_event()) is not NEED_DATA:
            if count:
                event.items()
            name = getattr(event, "name", None)
            names[name] = names.get(name, 0) + 1
            count += 1
    return count


def codec_eager(chunks):
    return codec_dispatch(chunks, lazy=False)


MODES = {
    "naive_str_dict": naive_str_dict,
    "naive_split_name": naive_split_name,
    "naive_split_dict": naive_split_dict,
    "codec_dispatch": codec_dispatch,
    "codec_dispatch_batch": codec_dispatch_batch,
    "codec_full": codec_full,
    "codec_eager": codec_eager,
}


def worst_case(megabytes: float) -> dict:
    lines = []
    size = 0
    i = 0
    while size < megabytes * 1_000_000:
        line = b"Variable: V%07d=%s\r\n" % (i, b"x" * 40)
        lines.append(line)
        size += len(line)
        i += 1
    data = b"Event: Huge\r\n" + b"".join(lines) + b"\r\n"
    parser = AMIParser(max_message_size=len(data) + 1)
    parser.receive_data(b"Asterisk Call Manager/11.0.0\r\n")
    parser.next_event()
    view = memoryview(data)
    start, cpu0 = time.perf_counter(), time.process_time()
    for k in range(len(data)):
        parser.receive_data(view[k:k + 1])
        event = parser.next_event()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    assert event is not NEED_DATA and len(event.get_all("Variable")) == i
    return {"mode": "worst_case_1_byte", "bytes": len(data), "seconds": round(elapsed, 3),
            "cpu_seconds": round(cpu, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--worst-mb", type=float, default=2.0)
    ap.add_argument("--baseline", metavar="PATH",
                    help="source tree of an older commit to compare with, in the same run")
    ap.add_argument("--first-run", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--worst-runs", type=int, default=3, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.baseline:
        compare(__file__, ["--runs", "1", "--messages", str(opts.messages),
                           "--worst-mb", str(opts.worst_mb), "--worst-runs", "1"],
                opts.baseline, opts.runs, ["msgs_per_cpu_s", "mb_per_cpu_s", "cpu_seconds"])
        return
    data = make_stream(opts.messages)
    results: dict[str, list[float]] = {m: [] for m in MODES}
    mbs: dict[str, list[float]] = {m: [] for m in MODES}
    for run in range(opts.first_run, opts.first_run + opts.runs):
        chunks = chunked(data, run)
        order = list(MODES)
        random.Random(run).shuffle(order)
        for mode in order:
            start, cpu0 = time.perf_counter(), time.process_time()
            count = MODES[mode](chunks)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
            assert count == opts.messages + (0 if mode.startswith("naive") else 1), (mode, count)
            rate = opts.messages / cpu
            results[mode].append(rate)
            mbs[mode].append(len(data) / cpu / 1e6)
            print(json.dumps({"run": run, "mode": mode, "messages": opts.messages,
                              "bytes": len(data), "msgs_per_cpu_s": round(rate),
                              "mb_per_cpu_s": round(len(data) / cpu / 1e6, 1),
                              "msgs_per_wall_s": round(opts.messages / elapsed)}), flush=True)
    med = {m: statistics.median(v) for m, v in results.items()}
    summary = {
        "summary": "median",
        "runs": opts.runs,
        "avg_message_bytes": round(len(data) / opts.messages),
        **{f"{m}_msgs_per_cpu_s": round(v) for m, v in med.items()},
        **{f"{m}_mb_per_cpu_s": round(statistics.median(mbs[m]), 1) for m in MODES},
    }
    for ours in ("codec_dispatch", "codec_dispatch_batch", "codec_eager", "codec_full"):
        for base in ("naive_str_dict", "naive_split_dict", "naive_split_name"):
            summary[f"{ours}_vs_{base}"] = round(med[ours] / med[base], 2)
    print(json.dumps(summary), flush=True)
    if opts.worst_mb <= 0:
        return
    worst = [worst_case(opts.worst_mb) for _ in range(opts.worst_runs)]
    for w in worst:
        print(json.dumps({"run": opts.first_run, **w}), flush=True)
    print(json.dumps({"summary": "worst_case_median", "bytes": worst[0]["bytes"],
                      "seconds": statistics.median(w["seconds"] for w in worst),
                      "cpu_seconds": statistics.median(w["cpu_seconds"] for w in worst)}),
          flush=True)


if __name__ == "__main__":
    main()
