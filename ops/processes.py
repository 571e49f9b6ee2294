"""Background processes started by the CLI: PID files, liveness, and stopping only what we started."""

import contextlib
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType


class ServiceError(Exception):
    """A server could not be installed, started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class PidFile:
    """Records the PID of a process we started, with a marker that must appear in its command line.

    The marker guards against PID reuse: a recorded PID whose process no longer carries the marker is
    not ours any more, and is never signalled.
    """

    path: Path
    marker: str

    def write(self, pid: int) -> None:
        """Record `pid`."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def running_pid(self) -> int | None:
        """The recorded PID if that process still runs and is ours; otherwise None. The file is removed
        only once that process has ended: one running under another command line may be ours, started with
        other settings (a status asked with a mistyped port removed the file of the Redis it had started,
        and nothing could stop that Redis afterwards), and is never signalled either way."""
        try:
            pid = int(self.path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if is_our_process(pid, self.marker):
            return pid
        if not is_our_process(pid, ""):  # every command line holds "": ended, or a zombie
            self.path.unlink(missing_ok=True)
        return None

    def stop(self, *, timeout_s: float = 30.0, signum: int = signal.SIGTERM, only: int | None = None) -> bool:
        """Signal our process (SIGTERM), SIGKILL it if it outlives `timeout_s`; True if one was stopped.
        `only`: stop it only if it is that PID (the one a command started, not one started since)."""
        pid = self.running_pid()
        if pid is None or (only is not None and pid != only):
            return False
        stop_pid(pid, self.marker, timeout_s=timeout_s, signum=signum)
        self.path.unlink(missing_ok=True)
        return True


def is_our_process(pid: int, marker: str) -> bool:
    """True when `pid` runs (not a zombie) and its command line contains `marker`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and marker in cmdline


def stop_pid(pid: int, marker: str, *, timeout_s: float, signum: int = signal.SIGTERM) -> None:
    """Stop one process that is ours, politely first."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_our_process(pid, marker):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)
    _reap(pid)


def _reap(pid: int) -> None:
    # A server started by this very process would stay a zombie until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Spawned:
    """A detached server process started by this process: only its PID is kept (no Popen to outlive)."""

    pid: int
    returncode: int | None = None

    def poll(self) -> int | None:
        """Its exit status once it has exited (it is reaped then), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def spawn(command: list[str], *, log_path: Path, pid_file: PidFile) -> Spawned:
    """Start a detached background process in its own session (Ctrl-C in a terminal does not reach it), and
    record its PID in `pid_file`: both, or neither, whenever a Ctrl-C or SIGTERM comes (a process started and
    not recorded could never be stopped, by this command or `services down`)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    executable = shutil.which(command[0]) or command[0]
    with uninterrupted():
        pid = os.posix_spawn(
            executable,
            command,
            dict(os.environ),
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )
        pid_file.write(pid)
    return Spawned(pid)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """A step that a Ctrl-C or SIGTERM must not cut in two (a process started and its PID recorded, servers
    being stopped): a signal arriving meanwhile takes effect as the step ends, through the handler it would
    have met (which may raise, as Ctrl-C's does). Steps nest. Outside the main thread, where Python
    delivers no signal, it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[signal.Signals] = []

    def defer(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))

    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {stop: signal.signal(stop, defer) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in previous.items():
            signal.signal(stop, handler)
    if caught:
        handler = previous[caught[0]]
        if callable(handler):
            handler(caught[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(caught[0])


def reachable_at(host: str) -> str:
    """Where this machine reaches a server listening on `host`: a wildcard address (every address) on
    loopback."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104


def host_port(host: str, port: int) -> str:
    """`host:port`, an IPv6 address in brackets, as a URL writes it (`http_url`, the local Redis's URL)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_url(host: str, port: int) -> str:
    """The URL of an HTTP server at `host` and `port` (IPv6 in brackets, its zone's `%` escaped)."""
    return f"http://{host_port(host.replace('%', '%25'), port)}"


def refuse_busy_listen_port(what: str, host: str, port: int, setting: str) -> None:
    """A clear error when `what` would listen where something already does (port 0: any port, never busy).

    Checked before starting: the process would otherwise fail deep in its start-up with a traceback, or
    (the API) after its shutdown timeout, and a starter polling the port would take the other for it.
    """
    if port and port_open(reachable_at(host), port):
        raise ServiceError(
            f"{what} cannot listen on {host}:{port}: the port is taken (another citizen-context process "
            f"or another program); stop it or set {setting} to a free port"
        )


def port_open(host: str, port: int) -> bool:
    """True when something accepts TCP connections on host:port (IPv4 or IPv6; a name that does not
    resolve has nothing listening)."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (`kill`, a CI job's time limit, make passing on its own) ends a command as Ctrl-C does: it
    then stops what it started (processes in sessions of their own are out of reach of a signal to its
    group; servers it started), a rebuild drops what it wrote. A second SIGTERM is ignored, so that it
    cannot cut that cleanup short."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
