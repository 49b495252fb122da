"""A real PostgreSQL server for tests and benchmarks: started in a temporary folder on a free
loopback port, stopped afterwards. No mock database.

The server refuses to run as root (CI runs as root), so as root it runs as the ``postgres``
user. Logins over TCP need a password (scram-sha-256), so a wrong one is refused as on a
real server. ``.ci/run`` installs Debian's ``postgresql`` package where the binaries are missing.
"""

from __future__ import annotations

import glob
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


# A veth pair between this network namespace and one made for the workers: the server listens
# on this side's address too, so workers in the namespace reach it over a network, not loopback.
# Both ends are this test's own (a /30 that exists only on the pair).
HOST_SIDE, WORKER_SIDE = "10.213.13.1", "10.213.13.2"


@dataclass
class WorkerNetwork:
    """Workers on their own network namespace: ``prefix`` runs a command there."""

    prefix: list[str]
    server_address: str  # the server, as the workers reach it


@contextmanager
def worker_network() -> Iterator[WorkerNetwork | None]:
    """A network namespace for workers, joined to this one by a veth pair; None where one cannot
    be made (not root, or no ``ip netns``): then workers and server share loopback."""
    name = f"dltool-workers-{os.getpid()}"
    host_link, worker_link = f"dlh{os.getpid() % 100000}", f"dlw{os.getpid() % 100000}"
    steps = [
        ["ip", "netns", "add", name],
        ["ip", "link", "add", host_link, "type", "veth", "peer", "name", worker_link],
        ["ip", "link", "set", worker_link, "netns", name],
        ["ip", "addr", "add", f"{HOST_SIDE}/30", "dev", host_link],
        ["ip", "link", "set", host_link, "up"],
        ["ip", "netns", "exec", name, "ip", "addr", "add", f"{WORKER_SIDE}/30", "dev", worker_link],
        ["ip", "netns", "exec", name, "ip", "link", "set", worker_link, "up"],
        ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"],
    ]
    made = os.geteuid() == 0 and shutil.which("ip") is not None
    try:
        for step in steps if made else []:
            if subprocess.run(step, capture_output=True, timeout=30).returncode != 0:
                made = False
                break
        yield WorkerNetwork(["ip", "netns", "exec", name], HOST_SIDE) if made else None
    finally:
        subprocess.run(["ip", "link", "del", host_link], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


@contextmanager
def running_server(host: str = "127.0.0.1", also: str | None = None) -> Iterator[str]:
    """Yield ``postgresql://dltool:PASSWORD@HOST:PORT/postgres`` while a fresh server runs;
    ``also``: a second address it listens on and takes password logins from."""
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
    listen = host
    if also is not None:
        listen = f"{host},{also}"
        with open(data / "pg_hba.conf", "a", encoding="utf-8") as rules:
            network = ipaddress.ip_network(f"{also}/30", strict=False)
            rules.write(f"host all all {network} scram-sha-256\n")
    options = f"-p {port} -k {folder} -c listen_addresses='{listen}' -c fsync=off"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w"]
    subprocess.run(_as_server_user([*pg_ctl, "-o", options, "start"]), check=True, capture_output=True, timeout=120)  # fmt: skip
    try:
        yield f"postgresql://{USER}:{PASSWORD}@{host}:{port}/postgres"
    finally:
        subprocess.run(_as_server_user([*pg_ctl, "-m", "fast", "stop"]), capture_output=True, timeout=120)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)
