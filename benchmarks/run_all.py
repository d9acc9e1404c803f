"""Run every benchmark script in this folder and collect their JSON lines into one report.

Each `benchmarks/*.py` (except this one) runs as a subprocess with a per-script timeout; the
last line of its stdout that parses as a JSON object is its result. `--quick` is passed to the
scripts that accept it (their source mentions `--quick`); the others run with their defaults
(say `--skip NAME` to leave a slow one out). Prints a table of every numeric figure (ratios
against the bare baselines included: each script measures its own baseline in the same run)
and writes the whole report as JSON.

    python benchmarks/run_all.py [--quick] [--timeout 600] [--only NAME ...] [--skip NAME ...]
                                 [--out results/benchmarks.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def scripts(directory: Path = HERE, only: list[str] | None = None, skip: list[str] | None = None) -> list[Path]:
    found = [p for p in sorted(Path(directory).glob("*.py")) if p.name != Path(__file__).name]
    if only:
        found = [p for p in found if p.stem in only]
    return [p for p in found if p.stem not in (skip or [])]


def last_json_line(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def run_script(path: Path, quick: bool, timeout: float) -> dict[str, Any]:
    """{"status": ok|failed|timeout|no-json, "seconds", "result", "stderr_tail"} of one script."""
    args = [sys.executable, str(path)]
    if quick and "--quick" in path.read_text():
        args.append("--quick")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": round(time.perf_counter() - start, 1), "args": args[2:],
                "result": None}
    seconds = round(time.perf_counter() - start, 1)
    result = last_json_line(proc.stdout)
    status = "failed" if proc.returncode != 0 else ("ok" if result is not None else "no-json")
    out = {"status": status, "seconds": seconds, "args": args[2:], "result": result}
    if status != "ok":
        out["stderr_tail"] = proc.stderr[-2000:]
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested dicts as dotted names; lists of dicts as `name[i]`; lists of
    numbers (curves) are left out."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, (int, float)):
        return {prefix: value}
    if isinstance(value, dict):
        out: dict[str, float] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {}


def table(report: dict[str, Any]) -> str:
    rows = [("benchmark", "figure", "value")]
    for name, run in report["benchmarks"].items():
        if run["status"] != "ok":
            rows.append((name, f"({run['status']} after {run['seconds']} s)", ""))
            continue
        for key, v in flatten(run["result"]).items():
            rows.append((name, key, f"{v:.4g}" if isinstance(v, float) else str(v)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="pass --quick to the scripts that accept it")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per script")
    p.add_argument("--only", nargs="*", help="script names (without .py) to run")
    p.add_argument("--skip", nargs="*", help="script names (without .py) to leave out")
    p.add_argument("--out", default="results/benchmarks.json", help="where to write the JSON report")
    p.add_argument("--dir", type=Path, default=HERE, help=argparse.SUPPRESS)  # for tests
    args = p.parse_args(argv)
    report: dict[str, Any] = {"quick": args.quick, "platform": platform.platform(), "cpu_count": os.cpu_count(),
                              "benchmarks": {}}
    for path in scripts(args.dir, args.only, args.skip):
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        report["benchmarks"][path.stem] = run_script(path, args.quick, args.timeout)
    print(table(report))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(r["status"] == "ok" for r in report["benchmarks"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
