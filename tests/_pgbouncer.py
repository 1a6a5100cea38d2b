"""A real PgBouncer in transaction pooling for the ``pgbouncer`` test tier.

The binary is Debian's ``pgbouncer`` package (1.18 on bookworm). When it is not on this
machine the tier installs it (``apt-get install --no-install-recommends pgbouncer``, about
5 s; ``apt-get update`` first only if the package is unknown), which works when the tests
run as root on a Debian-like system, as CI's clean machine does. The package's
maintainer scripts would start a system PgBouncer on port 6432: while installing, a
``/usr/sbin/policy-rc.d`` that refuses service starts is put in place when none is
there (and removed afterwards), so no daemon is left behind; the tier's own PgBouncer
listens on a free port of 127.0.0.1.

Per session one PgBouncer is started in a temporary directory, in front of the test
server (``tests/conftest.py``): ``pool_mode = transaction``, ``default_pool_size = 2``
(small, so session state that leaks from one client's transaction into another's shows),
``auth_type = trust`` with the test server's user in ``auth_file``, the server reached
through its Unix socket (the embedded server) or host and port. It is stopped at the end
of the session. When run as root it drops to the ``pgserver`` user (PgBouncer refuses to
run as root; that user exists whenever the embedded server ran as root).

Whether the tier runs (:func:`tier`), the Citus tier's policy: skipped, with one line,
only when ``REGIME_IO_SKIP_PGBOUNCER=1`` opts out. Anything else that stops it (not root
and no ``pgbouncer`` on PATH, no ``apt-get``, a failed install, a PgBouncer that does not
start) **fails** every pgbouncer test with the reason, so CI cannot pass without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SKIP_VARIABLE = "REGIME_IO_SKIP_PGBOUNCER"
_SERVER_USER = "pgserver"  # the embedded server's user when the tests run as root
_POLICY = Path("/usr/sbin/policy-rc.d")
_LOCK = Path("/var/tmp/regime-io-pgbouncer-install.lock")
POOL_SIZE = 2


class PgBouncerUnavailable(Exception):
    """The PgBouncer tier cannot run here; the message says why."""


def _as_root() -> bool:
    return os.name != "nt" and os.geteuid() == 0


def binary() -> str | None:
    """The ``pgbouncer`` executable, if installed (Debian puts it in /usr/sbin)."""
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer")) if p.is_file()), None)


def install() -> tuple[str, float]:
    """``pgbouncer`` on this machine, installed with apt-get when missing; returns the
    executable and the seconds the install took (0.0 when it was already there)."""
    found = binary()
    if found:
        return found, 0.0
    if not _as_root():
        raise PgBouncerUnavailable("pgbouncer is not installed and the tests do not run as root, so they "
                                   "cannot install it (apt-get install pgbouncer, or set "
                                   f"{SKIP_VARIABLE}=1)")
    if shutil.which("apt-get") is None:
        raise PgBouncerUnavailable("pgbouncer is not installed and there is no apt-get to install it "
                                   f"(install PgBouncer 1.18+, or set {SKIP_VARIABLE}=1)")
    t0 = time.monotonic()
    _LOCK.parent.mkdir(parents=True, exist_ok=True)
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second test session waits for the first install
        found = binary()
        if found:
            return found, time.monotonic() - t0
        placed = False
        if not _POLICY.exists():
            # invoke-rc.d asks policy-rc.d; 101 = "action forbidden": the postinst does not
            # start a system PgBouncer on 6432 (nor fail the install where none can start).
            _POLICY.write_text("#!/bin/sh\n# placed by regime_io's tests while installing pgbouncer\nexit 101\n")
            _POLICY.chmod(0o755)
            placed = True
        try:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=120",
                   "pgbouncer"]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0 and "Unable to locate package" in done.stderr + done.stdout:
                subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, env=env, check=False)
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise PgBouncerUnavailable(f"apt-get install pgbouncer failed ({done.returncode}): "
                                           f"{' | '.join(tail)}")
        finally:
            if placed:
                with contextlib.suppress(OSError):
                    _POLICY.unlink()
    found = binary()
    if not found:
        raise PgBouncerUnavailable("apt-get installed pgbouncer but no pgbouncer executable was found")
    return found, time.monotonic() - t0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _version(executable: str) -> str:
    out = subprocess.run([executable, "--version"], capture_output=True, text=True, check=False).stdout
    # "PgBouncer 1.18.0\nlibevent 2.1.12-stable\n..."
    first = out.strip().splitlines()[:1]
    return first[0].split()[-1] if first else "?"


@dataclass
class Bouncer:
    """A running PgBouncer on 127.0.0.1:``port`` in front of the test server."""

    executable: str
    base: Path
    port: int
    user: str
    database: str
    version: str = ""
    installed_in: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, *, admin: bool = False) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{'pgbouncer' if admin else self.database}"

    def describe(self) -> str:
        how = f", installed in {self.installed_in:.1f} s" if self.installed_in else ""
        return (f"PgBouncer {self.version} on 127.0.0.1:{self.port}, pool_mode=transaction, "
                f"default_pool_size={POOL_SIZE}{how}")

    def log(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.base, ignore_errors=True)


def start(server: Any) -> Bouncer:
    """Install (if needed) and start PgBouncer in front of ``server`` (a conftest TestServer)."""
    executable, took = install()
    s = server.settings
    base = Path(tempfile.mkdtemp(prefix="rio-pgbouncer-"))
    port = _free_port()
    target = [f"host={s.host}", f"port={s.port}", f"dbname={s.database}", f"user={s.user}"]
    if s.password:
        target.append(f"password={s.password.get()}")
    settings = {
        "listen_addr": "127.0.0.1", "listen_port": port, "unix_socket_dir": "",
        "auth_type": "trust", "auth_file": str(base / "userlist.txt"),
        "pool_mode": "transaction", "default_pool_size": POOL_SIZE, "max_client_conn": 200,
        "admin_users": s.user, "logfile": str(base / "pgbouncer.log"), "pidfile": str(base / "pgbouncer.pid"),
        # Defaults of a real deployment otherwise: no server_reset_query in transaction mode.
        "log_connections": 0, "log_disconnections": 0,
    }
    if _as_root():
        settings["user"] = _SERVER_USER
    ini = "[databases]\n" + f"{s.database} = {' '.join(target)}\n" + "[pgbouncer]\n" + "".join(
        f"{k} = {v}\n" for k, v in settings.items())
    (base / "pgbouncer.ini").write_text(ini)
    (base / "userlist.txt").write_text(f'"{s.user}" ""\n')
    if _as_root():
        import pwd

        entry = pwd.getpwnam(_SERVER_USER)
        for path in (base, *base.iterdir()):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    bouncer = Bouncer(executable, base, port, s.user, s.database, version=_version(executable),
                      installed_in=took)
    bouncer.process = subprocess.Popen([executable, str(base / "pgbouncer.ini")], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        if bouncer.process.poll() is not None:
            log = bouncer.log().strip().splitlines()[-3:]
            bouncer.stop()
            raise PgBouncerUnavailable(f"pgbouncer exited with {bouncer.process.returncode}: {' | '.join(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            break
        if time.monotonic() > deadline:
            bouncer.stop()
            raise PgBouncerUnavailable(f"pgbouncer did not listen on 127.0.0.1:{port} within 20 s")
        time.sleep(0.05)
    return bouncer


@dataclass
class Tier:
    """What the pgbouncer tier does this session: run on ``bouncer``, ``skip`` (one line
    why) or ``failure`` (the error with its traceback: every pgbouncer test fails with it)."""

    bouncer: Bouncer | None = None
    skip: str | None = None
    failure: str | None = None

    def header(self) -> str:
        if self.bouncer is not None:
            return self.bouncer.describe()
        if self.skip is not None:
            return f"SKIPPED, {self.skip}"
        first = (self.failure or "").strip().splitlines()[-1:] or ["?"]
        return f"FAILED to start (the pgbouncer tests fail): {first[0]}"


def tier(server: Any, start_bouncer: Callable[[Any], Bouncer] | None = None) -> Tier:
    """Decide and start the tier: skipped only when opted out; any other problem, a Python
    error in this module included, is a failure."""
    if os.environ.get(SKIP_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on"):
        return Tier(skip=f"{SKIP_VARIABLE}={os.environ[SKIP_VARIABLE]}")
    try:
        return Tier(bouncer=(start_bouncer or start)(server))
    except Exception:
        return Tier(failure=traceback.format_exc())
