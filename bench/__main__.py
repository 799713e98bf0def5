"""``make bench``: run every benchmark in ``bench/``, print one table and one JSON line each.

Each benchmark runs in its own process (ports, memory and event loops stay separate) and ends
its output with its result as one JSON object per line; the last such line is its result.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ORDER = ("simulator", "ingest", "servers", "hostile", "wakeup", "normalize", "pipeline", "history")


def discover() -> list[str]:
    found = sorted(p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py"))
    return sorted(found, key=lambda name: (ORDER.index(name) if name in ORDER else len(ORDER), name))


def run_one(name: str, full: bool) -> dict[str, Any]:
    code = (
        "import json, sys\n"
        f"from bench.bench_{name} import run\n"
        f"result = run(full={full!r})\n"
        "print(json.dumps(result, default=str), flush=True)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=HERE.parent, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    elapsed = time.perf_counter() - started
    result: dict[str, Any] = {"benchmark": name}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    result.setdefault("benchmark", name)
    if proc.returncode != 0:
        result["error"] = f"exited with {proc.returncode}"
    result["wall_seconds"] = round(elapsed, 1)
    return result


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def table(results: list[dict[str, Any]]) -> str:
    rows = [(r["benchmark"], key, _fmt(value)) for r in results for key, value in r.items() if key != "benchmark"]
    widths = [max(len(row[i]) for row in [("benchmark", "figure", "value"), *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(("benchmark", "figure", "value"), widths, strict=True)), line]
    previous = None
    for bench, key, value in rows:
        shown = bench if bench != previous else ""
        previous = bench
        out.append(f"{shown.ljust(widths[0])}  {key.ljust(widths[1])}  {value.rjust(widths[2])}")
    return "\n".join(out)


def machine() -> str:
    cpus = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    return f"{platform.machine()}, {cpus} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the big runs (1,000,000 applications)")
    parser.add_argument("names", nargs="*", metavar="NAME", help="run only these (e.g. hostile or bench_hostile)")
    parser.add_argument("--only", action="append", default=[], help="run only this benchmark (repeatable)")
    parser.add_argument("--record", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args(argv)

    known = discover()
    wanted = [name.removeprefix("bench_").removesuffix(".py") for name in [*args.names, *args.only]]
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; the benchmarks are: {', '.join(known)}")
    names = [n for n in known if not wanted or n in wanted]
    results = []
    for name in names:
        print(f"== {name} ({'full' if args.full else 'quick'})", file=sys.stderr, flush=True)
        result = run_one(name, args.full)
        print(json.dumps(result, default=str), flush=True)
        results.append(result)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = f"{'Full' if args.full else 'Quick'} run, {stamp}, {machine()}\n\n" + table(results)
    print()
    print(report)
    if args.record:
        with (HERE / "RESULTS.md").open("a", encoding="utf-8") as fh:
            fh.write(f"\n## {report.splitlines()[0]}\n\n```\n{table(results)}\n```\n")
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
