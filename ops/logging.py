"""Structured key-value logs for every process."""

import logging
import sys

import structlog


def configure_logging(level: str = "INFO") -> None:
    """Send structlog and standard-library logs to stderr as key=value lines."""
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
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
            structlog.processors.KeyValueRenderer(key_order=["timestamp", "level", "event"], sort_keys=True),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
