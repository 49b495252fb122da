"""Time one whole process: wall seconds and its own peak memory, without GNU time.

``os.wait4`` reaps the child and returns its resource usage, so the peak resident
memory (``ru_maxrss``) is the child's own (and its waited-for children's), with no
``/usr/bin/time`` wrapper process and no dependency on GNU time being installed.
Where ``os.wait4`` does not exist (Windows), peak memory is reported as NaN.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    """One finished process."""

    wall: float  # seconds from start to exit, measured by the parent
    peak_mib: float  # max resident set size of the child, MiB (NaN where unknown)
    stdout: str
    stderr: str


def user_environment() -> dict[str, str]:
    """This process's environment without ``PYTHONDONTWRITEBYTECODE``: a timed process runs
    as an installed program does, from bytecode caches (.pyc) its first run writes. A sandbox
    that sets the variable otherwise makes every run compile dltool's source (about 50 ms
    for `dltool --help`), which no user's installation pays."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def run_timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Measured:
    """Run ``command`` to completion in ``cwd`` (in :func:`user_environment` unless ``env``
    is given); exit the benchmark if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err, env=env if env is not None else user_environment())  # fmt: skip
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
            # ru_maxrss is in KiB on Linux and in bytes on macOS
            peak = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        else:
            process.wait()
            wall = time.perf_counter() - started
            peak = float("nan")
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if process.returncode != 0:
        sys.exit(f"failed ({process.returncode}): {' '.join(command)}\n{stderr[-3000:]}")
    return Measured(wall, peak, stdout, stderr)


def spread(values: list[float], unit: str = "s") -> str:
    """``median unit (min-max)``."""
    return f"{statistics.median(values):.2f} {unit} ({min(values):.2f}-{max(values):.2f})"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (platform.processor() is often empty)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    found = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return found.group(1).strip() if found else platform.processor() or "unknown CPU"
