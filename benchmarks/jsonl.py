"""How the benchmarks report: one JSON object per line, on stdout and appended to --out."""

from __future__ import annotations

import json


def emit_line(record: dict, out) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out is not None:
        out.write(line + "\n")
        out.flush()
