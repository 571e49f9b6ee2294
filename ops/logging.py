"""Structured key-value logs for every process, the libraries' own included."""

import logging
import sys
import time
from collections.abc import Callable

import structlog

# What every line carries first, whoever logged it.
KEY_ORDER = ["timestamp", "level", "event"]
# A library's identical record is written at most this often: kafka-python logs three errors on every
# reconnection attempt, a hundred and forty lines in 25 s of a broker outage.
REPEAT_EVERY_S = 30.0
# Distinct records remembered at most; past this the memory starts again (a repeat may then show early).
REPEATS_REMEMBERED = 1000


class RepeatFilter(logging.Filter):
    """Lets an identical record (same logger, level and message) through once per `every_s`; those left out
    in between are counted, and the next one let through says how many (`repeated=`)."""

    def __init__(self, every_s: float = REPEAT_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._every_s = every_s
        self._clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self._clock()
        written = self._seen.get(key)
        if written is not None and now - written[0] < self._every_s:
            self._seen[key] = (written[0], written[1] + 1)
            return False
        if written is not None and written[1]:
            record.repeated = written[1]
        if len(self._seen) >= REPEATS_REMEMBERED:
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


def cancelled_by_its_client(record: logging.LogRecord) -> bool:
    """Whether a record is kafka-python's error for a request its own client cancelled, by closing the
    connection the request was on (`kafka.errors.Cancelled`): a rebuild, a consumer, a producer closing as
    it ends, with a metadata refresh in flight, logged "Metadata refresh: failed Cancelled" at ERROR after
    a good run. Nothing failed; a connection lost for any other reason carries that reason, and is logged."""
    return record.name.startswith("kafka.") and any(
        type(arg).__name__ == "Cancelled" and type(arg).__module__ == "kafka.errors"
        for arg in (record.args if isinstance(record.args, tuple) else ())
    )


def read_after_its_client_closed(record: logging.LogRecord) -> bool:
    """Whether a record is kafka-python's traceback for a read or write on a socket its own client has just
    closed (the socket already None: "'NoneType' object has no attribute 'recv'"), a race as a client
    closes on SIGTERM. Nothing failed that the closing did not end on purpose."""
    error = record.exc_info[1] if record.exc_info else None
    return (
        record.name.startswith("kafka.")
        and isinstance(error, AttributeError)
        and str(error)
        in {"'NoneType' object has no attribute 'recv'", "'NoneType' object has no attribute 'send'"}
    )


def structured_formatter() -> logging.Formatter:
    """A formatter that writes a standard-library record (uvicorn's, kafka-python's, Alembic's) as the
    same key=value line as the project's own, with the logger's name."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(allow=["repeated"]),
            structlog.processors.TimeStamper(fmt="iso", utc=True),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=KEY_ORDER, sort_keys=True),
        ],
    )


def configure_logging(level: str = "INFO") -> None:
    """Send structlog and standard-library logs to stderr as key=value lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structured_formatter())
    # Left out first: a record dropped anyway takes no place in the repeats' memory.
    handler.addFilter(
        lambda record: not (cancelled_by_its_client(record) or read_after_its_client_closed(record))
    )
    handler.addFilter(RepeatFilter())
    logging.basicConfig(handlers=[handler], level=level)
    # kafka-python logs every reconnect at WARNING/ERROR; keep its noise below ours.
    logging.getLogger("kafka").setLevel(logging.ERROR)
    # Alembic announces each of its plugins at INFO; only the migrations it runs are worth reading.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # httpx logs every request at INFO; the CLI's readiness polling would fill the terminal.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(key_order=KEY_ORDER, sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
