"""A real PostgreSQL server for tests and benchmarks: started in a temporary folder on a free
loopback port, stopped afterwards. No mock database.

The server refuses to run as root (CI runs as root), so as root it runs as the ``postgres``
user. Logins over TCP need a password (scram-sha-256), so a wrong one is refused as on a
real server. ``.ci/run`` installs Debian's ``postgresql`` package where the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "dltool"
PASSWORD = "sweep-secret"  # noqa: S105  (a throwaway test server's, on loopback only)


def binaries() -> Path:
    """The folder of initdb and pg_ctl.

    Raises:
        RuntimeError: PostgreSQL is not installed (CI installs it: .ci/run).
    """
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if versions:
        return Path(versions[-1]).parent
    raise RuntimeError(
        "PostgreSQL is not installed (no pg_ctl): apt-get install -y postgresql (.ci/run does)"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


@contextmanager
def running_server(host: str = "127.0.0.1") -> Iterator[str]:
    """Yield ``postgresql://dltool:PASSWORD@HOST:PORT/postgres`` while a fresh server runs."""
    bin_dir = binaries()
    folder = Path(tempfile.mkdtemp(prefix="dltool-pg-"))
    folder.chmod(0o777)  # the postgres user writes here
    data = folder / "data"
    password_file = folder / "password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o644)
    port = free_port()
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8"]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={password_file}"]
    subprocess.run(_as_server_user(initdb), check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {folder} -c listen_addresses={host} -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w"]
    subprocess.run(_as_server_user([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql://{USER}:{PASSWORD}@{host}:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "fast", "stop"]), capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
