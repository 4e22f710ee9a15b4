"""`make bench`: every bench, each in its own process with a time budget, and one table of figures.

    .venv/bin/python bench/all.py [--full] [--only sweep,paper] [--budget 570] [--markdown docs/benchmarks.md]

Each bench prints `BENCH_ROW {json}` lines (bench/harness.py: emit_row) besides its own text; this
collects them and prints one table: figure, value, unit, ratio, target, met. A bench that fails
or runs out of its budget gets a row saying so (the others still run). The defaults are sized
for the whole run to take under 10 minutes on a 2-core machine (`--full`: each bench's own
defaults, much longer). `--markdown FILE` rewrites the part of FILE between
`<!-- bench:begin -->` and `<!-- bench:end -->` with the table and the machine's description.

Databases: DATABASE_URL for every bench is BENCH_DATABASE_URL, else
postgres://postgres@127.0.0.1:5432/bench (each bench empties its tables). Redis: only
BENCH_REDIS_URL (a database the benches own), with a key prefix per bench (`bench-<name>`);
without it no bench gets a REDIS_URL, so none can touch a shared Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PREFIX = "BENCH_ROW "
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/bench"


@dataclass
class Bench:
    name: str
    budget: float  # seconds
    quick: list[str] = field(default_factory=list)  # arguments for `make bench` (only those the bench knows)


BENCHES = [
    Bench("paper", 100, ["--orders", "100", "--pending", "20000", "--symbols", "50", "--quick"]),
    Bench("live", 90, ["--orders", "100", "--quick"]),
    Bench("sweep", 240, ["--rounds", "2"]),
    Bench("stream", 90, ["--triggers", "30", "--symbols", "50", "--cpu-seconds", "10"]),
    Bench("user_stream", 100, ["--accounts", "100", "--latency-accounts", "5", "--rounds", "2", "--idle-seconds", "5"]),
    Bench("reconcile", 60, ["--accounts", "200"]),
    Bench("ceiling", 90, ["--quick"]),
    Bench("parity", 60, ["--orders", "60", "--quick"]),
]


@dataclass
class Outcome:
    bench: str
    rows: list[dict[str, Any]]
    seconds: float
    status: str  # "ok", "failed (exit N)", "timed out", "absent"


def known_arguments(path: Path, arguments: list[str]) -> list[str]:
    """The options (with their values) that the bench's source declares: a bench whose options
    changed still runs (with its defaults for the rest)."""
    source = path.read_text()
    kept: list[str] = []
    index = 0
    while index < len(arguments):
        option = arguments[index]
        takes_value = index + 1 < len(arguments) and not arguments[index + 1].startswith("--")
        width = 2 if takes_value else 1
        if f'"{option}"' in source:
            kept += arguments[index : index + width]
        index += width
    return kept


def bench_env(name: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "BENCH_REDIS_URL"}}
    env["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE)
    env["DEBUG"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if os.environ.get("BENCH_REDIS_URL"):
        env["REDIS_URL"] = env["BENCH_REDIS_URL"] = os.environ["BENCH_REDIS_URL"]
        env["REDIS_KEY_PREFIX"] = f"bench-{name}"  # each bench's keys apart, in a database the benches own
    return env


def run_bench(bench: Bench, *, full: bool, timeout: float) -> Outcome:
    path = HERE / f"{bench.name}.py"
    if not path.exists():
        return Outcome(bench.name, [], 0.0, "absent")
    arguments = [] if full else known_arguments(path, bench.quick)
    command = [sys.executable, str(path), *arguments]
    print(f"\n=== bench/{bench.name}.py {' '.join(arguments)} (budget {timeout:.0f} s)", flush=True)
    started = time.monotonic()
    # Its own process group: a timed-out bench is stopped with the simulators it started.
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=bench_env(bench.name),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    rows: list[dict[str, Any]] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(PREFIX):
                try:
                    rows.append(json.loads(line[len(PREFIX) :]))
                except json.JSONDecodeError:
                    print(f"  (unreadable row: {line.strip()})")
                continue
            print(f"  {line.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = process.wait(timeout=timeout)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        status = f"timed out after {timeout:.0f} s"
    reader.join(timeout=5)
    return Outcome(bench.name, rows, time.monotonic() - started, status)


# --------------------------------------------------------------------------- the table


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table_rows(outcomes: list[Outcome]) -> list[list[str]]:
    lines = []
    for outcome in outcomes:
        for row in outcome.rows:
            ratio = f"{fmt(row['ratio'])}x {row.get('ratio_of') or ''}".strip() if "ratio" in row else ""
            lines.append(
                [
                    f"{row.get('bench', outcome.bench)}: {row['figure']}",
                    fmt(row["value"], 4),
                    row.get("unit", ""),
                    ratio,
                    row.get("target") or "",
                    fmt(row.get("met")) if "met" in row else "",
                ]
            )
        if outcome.status != "ok":
            lines.append([f"{outcome.bench}: bench {outcome.status}", "", "", "", "", ""])
    return lines


HEADER = ["figure", "value", "unit", "ratio", "target", "met"]


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    info = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cores": str(os.cpu_count())}
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        info["cpu"] = found.group(1).strip() if found else platform.processor()
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.M)
        info["ram"] = f"{int(found.group(1)) / 1024 / 1024:.1f} GiB" if found else "?"
    if hasattr(os, "getloadavg"):
        info["load"] = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    info["python"] = platform.python_version()
    try:
        import psycopg

        with psycopg.connect(bench_env()["DATABASE_URL"].rsplit("/", 1)[0] + "/postgres", connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            info["postgresql"] = str(row[0]) if row else "?"
    except Exception as exc:
        info["postgresql"] = f"unavailable ({type(exc).__name__})"
    if os.environ.get("BENCH_REDIS_URL"):
        try:
            import redis

            info["redis"] = str(redis.Redis.from_url(os.environ["BENCH_REDIS_URL"]).info("server")["redis_version"])
        except Exception as exc:
            info["redis"] = f"unavailable ({type(exc).__name__})"
    else:
        info["redis"] = "not used (BENCH_REDIS_URL unset)"
    return info


def write_markdown(
    path: Path, rows: list[list[str]], outcomes: list[Outcome], host: dict[str, str], full: bool
) -> None:
    runs = ", ".join(f"{o.bench} {o.seconds:.0f} s ({o.status})" for o in outcomes)
    section = "\n".join(
        [
            BEGIN,
            f"Generated by `{'bench/all.py --full' if full else 'make bench'}` on {host['date']}: "
            f"{host.get('cpu', '?')}, {host['cores']} cores, {host.get('ram', '?')} RAM, "
            f"PostgreSQL {host['postgresql']}, Redis {host['redis']}, Python {host['python']}; "
            f"load average at the end {host.get('load', '?')}.",
            "",
            f"Runs: {runs}.",
            "",
            markdown_table(rows),
            END,
        ]
    )
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="each bench with its own (long) defaults")
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--budget", type=float, default=570.0, help="seconds for the whole run")
    parser.add_argument("--markdown", type=Path, help="rewrite this file's bench section")
    args = parser.parse_args()
    only = {name for name in args.only.split(",") if name}
    chosen = [b for b in BENCHES if not only or b.name in only]
    deadline = time.monotonic() + args.budget
    outcomes = []
    for bench in chosen:
        left = deadline - time.monotonic()
        if left < 10:
            outcomes.append(Outcome(bench.name, [], 0.0, "skipped (the run's budget is spent)"))
            continue
        budget = bench.budget * (4 if args.full else 1)
        outcomes.append(run_bench(bench, full=args.full, timeout=min(budget, left)))
    rows = table_rows(outcomes)
    print("\n" + text_table(rows))
    host = machine()
    print(
        f"\n{host.get('cpu', '?')}, {host['cores']} cores, {host.get('ram', '?')}; PostgreSQL {host['postgresql']}; "
        f"Redis {host['redis']}; {host['date']}"
    )
    if args.markdown:
        write_markdown(args.markdown, rows, outcomes, host, args.full)
        print(f"wrote the table into {args.markdown}")


if __name__ == "__main__":
    main()
