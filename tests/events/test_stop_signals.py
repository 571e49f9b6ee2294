"""The consumer's stop on SIGTERM or SIGINT, whatever its main thread holds when the signal comes."""

import subprocess
import sys
import textwrap

import pytest

# A process that holds the stop event's own lock, as every `stop.wait` briefly does, while two SIGTERMs
# arrive (as `timeout` sends them: to the process, then to its group). A handler that set the event or
# logged there would wait for ever for a lock its own thread holds.
SIGNALLED_WHILE_HOLDING_THE_LOCK = textwrap.dedent(
    """
    import os, signal, threading, time
    from events.process import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)
    with stop._cond:
        os.kill(os.getpid(), signal.{signal})
        os.kill(os.getpid(), signal.{signal})
        time.sleep(0.2)  # Python runs its handlers here, the lock held
    assert stop.wait(10), "not stopped"
    time.sleep(0.2)  # a second "stop requested", if any, is written meanwhile
    """
)


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_once_even_while_the_main_thread_holds_the_events_lock(signal: str) -> None:
    stopped = subprocess.run(
        [sys.executable, "-c", SIGNALLED_WHILE_HOLDING_THE_LOCK.format(signal=signal)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert stopped.returncode == 0, stopped.stderr
    said = stopped.stdout + stopped.stderr
    assert said.count("stop requested") == 1
    assert signal in said
