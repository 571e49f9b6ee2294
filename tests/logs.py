"""What a module logs through structlog, captured whatever structlog's configuration has cached.

`structlog.testing.capture_logs` changes the configuration's processors, which a logger already used under
`cache_logger_on_first_use` (ops/logging.py, set by any earlier test that configured logging) no longer
reads: its entries would pass the capture by, and a test asserting on them would pass or fail by the order
the tests ran in. The module's own logger is replaced for the test instead.
"""

from types import ModuleType

import pytest
import structlog
from structlog.testing import LogCapture


def capture_module_logs(monkeypatch: pytest.MonkeyPatch, module: ModuleType) -> LogCapture:
    """Capture every entry `module.log` logs while the test runs (`.entries`, with their `log_level`)."""
    capture = LogCapture()
    monkeypatch.setattr(module, "log", structlog.wrap_logger(None, processors=[capture]))
    return capture
