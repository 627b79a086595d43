"""Shared by the benchmarks: machine description, JSON results and markdown sections.

Each benchmark writes ``docs/benchmarks/<name>.json`` and replaces its own section of
``docs/benchmarks.md`` (between ``<!-- BEGIN name -->`` and ``<!-- END name -->``), so
rerunning one benchmark leaves the others' tables alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN = DOCS / "benchmarks.md"
HEADER = """# Benchmarks

Every figure here comes from a script in `benchmarks/` that anyone can rerun; each section
names its command and the machine it ran on. Raw results are in `docs/benchmarks/*.json`.
"""


def machine() -> dict[str, Any]:
    """CPU model, core count, memory, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    versions = {}
    for module in ("torch", "numpy", "gymnasium", "stable_baselines3", "qagent"):
        with contextlib.suppress(ImportError):
            versions[module] = __import__(module).__version__
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d"),
    }


def machine_line(info: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return f"{info['cores']} cores ({info['cpu']}), {info['memory_gib']} GiB, Python {info['python']}; {versions}; {info['date']}"


def command_line() -> str:
    args = [Path(sys.argv[0]).as_posix()] + sys.argv[1:]
    try:
        rel = Path(args[0]).resolve().relative_to(ROOT).as_posix()
        args[0] = rel
    except ValueError:
        pass
    return "python " + shlex.join(args)


class StoppedError(Exception):
    """A training run was stopped by SIGINT/SIGTERM; it checkpointed and can be resumed."""


def train_run(args: list[str], run_dir: Path) -> dict[str, Any]:
    """Run ``python -m qagent train ARGS`` (writing ``run_dir``); return its evaluations, run.json and wall time.

    Raises :class:`StoppedError` when the run was stopped by a signal (exit 130 or 143): it has
    checkpointed, and ``qagent train --resume run_dir`` continues it.
    """
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "qagent", "train", *args], capture_output=True, text=True)
    if proc.returncode in (130, 143):
        raise StoppedError(f"{run_dir.name} was stopped at a checkpoint")
    if proc.returncode:
        raise RuntimeError(f"{run_dir.name} failed:\n{proc.stderr[-3000:]}")
    return {**read_run(run_dir), "wall_seconds": round(time.perf_counter() - started, 1)}


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's evaluations and run.json."""
    return {
        "evaluations": [json.loads(line) for line in (run_dir / "evaluations.jsonl").read_text().splitlines()],
        "meta": json.loads((run_dir / "run.json").read_text()),
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    path = DOCS / "benchmarks" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def write_section(name: str, markdown: str, path: Path = MARKDOWN) -> Path:
    """Replace (or append) the section ``name`` of ``path`` (docs/benchmarks.md by default)."""
    text = path.read_text() if path.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n{markdown.strip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path


def git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return ""


def publish(
    name: str, title: str, body: list[str], data: dict[str, Any], write: bool = True, also: tuple[Path, ...] = ()
) -> str:
    """Print a section (title, command, machine, then ``body``); with ``write``, record it.

    Writes ``docs/benchmarks/<name>.json`` (``data`` plus machine and command) and replaces
    the section ``name`` of ``docs/benchmarks.md`` and of every page in ``also``.
    """
    info = machine()
    markdown = "\n".join(
        [
            f"## {title}",
            "",
            f"Command: `{command_line()}` (commit {git_commit()}).",
            f"Machine: {machine_line(info)}.",
            *body,
        ]
    )
    print(markdown)
    if write:
        write_json(name, {"machine": info, "command": command_line(), **data})
        for path in (MARKDOWN, *also):
            write_section(name, markdown.replace("## ", "### ", 1) if path != MARKDOWN else markdown, path)
    return markdown
