"""Writing data for people and for programs, in the formats every command shares.

``table`` is aligned text for a terminal, ``json`` one document, ``csv`` rows with
a header line, ``jsonl`` one JSON object a line (for streams). No database and no
trio here, so that any command can use it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO


def write_json(data: Any, out: TextIO) -> None:
    """One JSON document, indented, ending with a newline."""
    json.dump(data, out, indent=2, default=str)
    out.write("\n")


def write_jsonl(items: Iterable[Any], out: TextIO) -> None:
    """One compact JSON object a line."""
    dumps = json.JSONEncoder(separators=(",", ":"), default=str, ensure_ascii=False).encode
    out.write("".join([dumps(item) + "\n" for item in items]))


def write_csv(header: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO) -> None:
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if v is None else v for v in row] for row in rows)


def write_table(header: Sequence[str], rows: Iterable[Sequence[Any]], out: TextIO, *, indent: str = "") -> None:
    """Columns padded to their widest cell, separated by two spaces."""
    table = [[str(h) for h in header]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write(indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n")
