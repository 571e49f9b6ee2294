"""Every log line is key=value, the libraries' own included (pure)."""

import logging
import re
import shlex
import subprocess
import sys

from kafka.errors import Cancelled, KafkaConnectionError

from ops.logging import (
    RepeatFilter,
    cancelled_by_its_client,
    read_after_its_client_closed,
    structured_formatter,
)


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(line))


def test_a_library_warning_is_written_as_the_projects_own_lines_are() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.WARNING, __file__, 1, "Invalid HTTP request received.", None, None
    )
    line = structured_formatter().format(record)
    assert line.startswith("timestamp=")
    written = fields(line)
    assert written["level"] == "warning"
    assert written["event"] == "Invalid HTTP request received."
    assert written["logger"] == "uvicorn.error"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", written["timestamp"])


def test_a_library_error_keeps_its_traceback() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application", None, sys.exc_info()
        )
    line = structured_formatter().format(record)
    assert fields(line)["level"] == "error"
    assert "ValueError: broken" in line


def test_an_identical_library_record_is_written_once_per_interval_with_the_repeats_counted() -> None:
    now = [0.0]
    repeats = RepeatFilter(every_s=30, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kafka.net.manager", logging.ERROR, __file__, 1, message, None, None)

    refused = "Connection failed: KafkaConnectionError: 111 ECONNREFUSED"
    assert repeats.filter(record(refused))
    for second in range(1, 30):
        now[0] = second
        assert not repeats.filter(record(refused))
    assert repeats.filter(record("another message"))  # a different record is not held back
    now[0] = 30
    again = record(refused)
    assert repeats.filter(again)
    assert fields(structured_formatter().format(again))["repeated"] == "29"


def test_a_request_cancelled_by_its_own_client_closing_is_no_error_but_a_lost_connection_is() -> None:
    # Logged at ERROR by kafka-python when a client closed with a metadata refresh in flight: after a good
    # rebuild, an error line that log alerting would take for a failure.
    def refresh_failed(error: Exception, logger: str = "kafka.cluster") -> logging.LogRecord:
        return logging.LogRecord(
            logger, logging.ERROR, __file__, 1, "Metadata refresh: failed %s", (error,), None
        )

    assert refresh_failed(Cancelled()).getMessage() == "Metadata refresh: failed Cancelled"
    assert cancelled_by_its_client(refresh_failed(Cancelled()))
    assert not cancelled_by_its_client(refresh_failed(KafkaConnectionError("111 ECONNREFUSED")))
    assert not cancelled_by_its_client(refresh_failed(Cancelled(), logger="citizen_context"))


def test_every_process_leaves_out_the_cancelled_requests_error_and_keeps_the_others() -> None:
    script = (
        "import logging\n"
        "from kafka.errors import Cancelled, KafkaConnectionError\n"
        "from ops.logging import configure_logging\n"
        "configure_logging()\n"
        "log = logging.getLogger('kafka.cluster')\n"
        "log.error('Metadata refresh: failed %s', Cancelled())\n"
        "log.error('Metadata refresh: failed %s', KafkaConnectionError('111 ECONNREFUSED'))\n"
    )
    written = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    ).stderr
    assert "Metadata refresh: failed Cancelled" not in written
    assert "Metadata refresh: failed KafkaConnectionError: 111 ECONNREFUSED" in written


def test_a_read_on_a_socket_its_own_kafka_client_closed_is_no_error_but_another_attribute_error_is() -> None:
    # Logged with its traceback by kafka-python as a rebuild's share closed on SIGTERM.
    def failed_read(error: Exception, logger: str = "kafka.net.transport") -> logging.LogRecord:
        try:
            raise error
        except AttributeError:
            info = sys.exc_info()
        return logging.LogRecord(
            logger, logging.ERROR, __file__, 1, "Error receiving network data", None, info
        )

    assert read_after_its_client_closed(
        failed_read(AttributeError("'NoneType' object has no attribute 'recv'"))
    )
    assert not read_after_its_client_closed(
        failed_read(AttributeError("'Broker' object has no attribute 'id'"))
    )
    assert not read_after_its_client_closed(
        failed_read(AttributeError("'NoneType' object has no attribute 'recv'"), logger="citizen_context")
    )
