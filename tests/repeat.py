"""Run chosen tests N times, each in a fresh pytest process, and count passes and failures.

    python -m tests.repeat tests/service/test_api.py::test_cancel_a_running_job_stops_within_a_step -n 20
    python -m tests.repeat tests/e2e/test_sweeps.py -n 10 --burn 2     # with 2 CPU-burning processes beside it

Hunts tests that race the machine's speed (docs/testing.md, "Making a state certain"): a test that
passes alone once may fail one run in five on a quieter or a busier machine. Each run is a new
pytest process, so session fixtures (services, the browser) start afresh as in `make test`.
`--burn K` keeps K busy loops running for the whole repetition; they stop with it. The output of
every failing run is kept under test-output/repeat/<start time>/.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "test-output" / "repeat"
BUSY_LOOP = "while True: pass"


def start_burners(count: int) -> list[subprocess.Popen]:
    """`count` single-threaded busy loops, each keeping one core busy."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(count)]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for proc in burners:
        proc.kill()
    for proc in burners:
        proc.wait()


def run_once(tests: list[str], pytest_args: list[str], log: Path) -> tuple[bool, float, str]:
    """One pytest run of `tests`; (passed, seconds, pytest's summary line). The whole output goes to `log`."""
    started = time.monotonic()
    with open(log, "wb") as out:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, *tests],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    seconds = time.monotonic() - started
    lines = log.read_text(errors="replace").splitlines()
    summary = next((line for line in reversed(lines) if re.search(r"\b(passed|failed|error|no tests ran)\b", line)), "")
    return code == 0, seconds, summary.strip("= ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.repeat", description=__doc__.split("\n\n")[0])
    parser.add_argument("tests", nargs="+", help="pytest node ids or paths")
    parser.add_argument("-n", "--count", type=int, default=10, help="how many runs (default 10)")
    parser.add_argument("--burn", type=int, default=0, metavar="K", help="CPU-burning processes beside the runs")
    parser.add_argument("--pytest-args", default="", help="extra pytest arguments, one string (e.g. '-x -n 2')")
    args = parser.parse_args(argv)
    if args.count < 1 or args.burn < 0:
        parser.error("--count must be at least 1 and --burn at least 0")

    out = OUTPUT / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    burners = start_burners(args.burn)
    results: list[tuple[bool, float, str]] = []
    try:
        for run in range(1, args.count + 1):
            log = out / f"run-{run:03d}.log"
            passed, seconds, summary = run_once(args.tests, shlex.split(args.pytest_args), log)
            results.append((passed, seconds, summary))
            if passed:
                log.unlink()
            verdict = "pass" if passed else "FAIL"
            load_now = os.getloadavg()[0]
            print(f"run {run}/{args.count}: {verdict} in {seconds:.1f} s, load {load_now:.1f} ({summary})", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        stop_burners(burners)

    passes = sum(1 for passed, _, _ in results if passed)
    times = sorted(seconds for _, seconds, _ in results)
    load = f" beside {args.burn} busy loop(s)" if args.burn else ""
    print(
        f"{passes} passed, {len(results) - passes} failed of {len(results)} runs{load}; "
        f"seconds per run: min {times[0]:.1f}, median {times[len(times) // 2]:.1f}, max {times[-1]:.1f}"
        if times
        else "no runs"
    )
    if passes < len(results):
        print(f"the failing runs' output: {out}/run-NNN.log")
    else:
        out.rmdir()
    return 0 if results and passes == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
