"""`citizen-context services`: the local Redis and Kafka servers."""

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import click

from ops.cli.root import fail, main
from ops.processes import ServiceError, sigterm_as_interrupt, uninterrupted
from ops.servers import LocalServer, ensure_command, judged_servers, local_servers
from ops.settings import ServicesSettings
from ops.tools import ensure_axe_core, ensure_chromium


@main.group()
def services() -> None:
    """The local Redis and Kafka servers (loopback only, data under the data folder)."""


@services.command("up")
def services_up() -> None:
    """Install what is missing and start the servers that are not running (idempotent)."""
    try:
        start_servers()
    except ServiceError as error:
        fail(error)


@services.command("down")
def services_down() -> None:
    """Stop the servers citizen-context started, by their PID (exit 1 when one's settings name no server
    on this machine: whether one of ours still runs there cannot be told)."""
    unjudged = False
    for name, server in reversed(judged_servers()):
        if isinstance(server, ServiceError):
            unjudged = True
            click.secho(f"{name}: not stopped: {server}", fg="red", err=True)
        else:
            click.echo(f"{server.name}: {'stopped' if server.down() else 'was not running'}")
    if unjudged:
        sys.exit(1)


@services.command("status")
def services_status() -> None:
    """Tell which servers run, where, and where their data is."""
    for name, server in judged_servers():
        if isinstance(server, ServiceError):
            click.echo(f"{name:8} not run here: {server}")
            continue
        state = server.status()
        running = f"running (pid {state.pid})" if state.running else "stopped"
        click.echo(f"{state.name:8} {running:22} {state.address:28} data: {state.data_dir}")


@services.command("tools")
def services_tools() -> None:
    """Install the tools the tests use besides the servers: kcat, Chromium and axe-core."""
    try:
        click.echo(f"kcat: {ensure_command('kcat', 'kcat')}")
        click.echo(f"chromium: {ensure_chromium()}")
        click.echo(f"axe-core: {ensure_axe_core(ServicesSettings().cache_dir)}")
    except ServiceError as error:
        fail(error)


@services.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def services_run(command: tuple[str, ...]) -> None:
    """Start the servers, run COMMAND, then stop only the servers this call started.

    Ctrl-C or SIGTERM (make passes its own on, a CI job's time limit) ends COMMAND, then stops those servers.
    The exit status is COMMAND's (128 + the signal's number when a signal ended it; 130 when interrupted).
    """
    try:
        with sigterm_as_interrupt(), servers_running():
            code = _run_to_the_end(list(command))
    except ServiceError as error:
        fail(error)
    except FileNotFoundError:
        click.secho(f"error: no such command: {command[0]}", fg="red", err=True)
        sys.exit(127)
    except KeyboardInterrupt:
        sys.exit(128 + signal.SIGINT)
    sys.exit(code if code >= 0 else 128 - code)


# How long COMMAND may take to end once asked, before it is killed.
COMMAND_STOP_S = 30


def _run_to_the_end(command: list[str]) -> int:
    """Run `command`; on an interrupt, end it (SIGTERM, then SIGKILL after COMMAND_STOP_S) and wait for it
    before the interrupt goes on to stop the servers."""
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached COMMAND too (one process group); a SIGTERM to this process did not.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=COMMAND_STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise


class Started(NamedTuple):
    """A server a command started, and the process it started (None if it had ended already)."""

    server: LocalServer
    pid: int | None


def start_servers() -> list[Started]:
    """Start every server not running; those this call started, each with its process's PID, read as soon as
    it is up (another command may stop and start one again while the next comes up)."""
    started: list[Started] = []
    try:
        for server in local_servers():
            if server.status().running:
                # Started already, it is made ready all the same (Kafka: the topics these settings name).
                # Not counted ours before `up` returns: an interrupt meanwhile must not stop another's server.
                if server.up():  # it had stopped meanwhile: started now, and ours
                    status = server.status()
                    started.append(Started(server, status.pid))
                    click.echo(f"{server.name}: started at {status.address}")
                else:
                    click.echo(f"{server.name}: running")
                continue
            click.echo(f"{server.name}: starting…")
            # Ours from here: a start that fails or is interrupted (Ctrl-C, SIGTERM in the bench) while the
            # server comes up is stopped with the others.
            started.append(Started(server, None))
            if server.up():
                status = server.status()
                started[-1] = Started(server, status.pid)
                click.echo(f"{server.name}: started at {status.address}")
            else:
                started.pop()  # someone else started it meanwhile: not ours to stop
    except BaseException:
        with uninterrupted():  # a Ctrl-C now must not leave the servers after it running
            for server, pid in reversed(started):
                # Its own process only, once known (the one coming up has none yet). Said as a stop after
                # start-up is: the log ended at "kafka: starting…", as if it were left running.
                if server.down(only=pid):
                    click.echo(f"{server.name}: stopped")
        raise
    return started


@contextmanager
def servers_running() -> Iterator[None]:
    started = start_servers()
    try:
        yield
    finally:
        with uninterrupted():
            # Only the processes this call started: a server stopped meanwhile (by hand, or `services down`)
            # and started again by another command is that command's to stop, not this one's.
            for server, pid in reversed(started):
                if pid is not None and server.down(only=pid):
                    click.echo(f"{server.name}: stopped")
                else:
                    click.echo(f"{server.name}: the process started here has ended already; left as it is")
