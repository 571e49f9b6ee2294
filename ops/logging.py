"""Structured key-value logs for every process, the libraries' own included."""

import logging
import sys

import structlog

# What every line carries first, whoever logged it.
KEY_ORDER = ["timestamp", "level", "event"]


def structured_formatter() -> logging.Formatter:
    """A formatter that writes a standard-library record (uvicorn's, kafka-python's, Alembic's) as the
    same key=value line as the project's own, with the logger's name."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.stdlib.add_logger_name,
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
