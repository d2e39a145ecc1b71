"""One-JSON-object-per-line logging, quiet by default.

Lambda sends an extension's stderr to CloudWatch with the function's logs, so every line is a
self-contained JSON object (``timestamp``, ``level``, ``logger``, ``message`` plus fields) that
CloudWatch Logs Insights and Lambda's JSON log filtering can read. Only warnings and errors are
written unless ``FASTPROXY_LOG_LEVEL`` asks for more (``debug``, ``info``, ``warning``,
``error``, ``off``). Payloads are never logged: callers pass sizes, ids and names only.

Import-light on purpose (the extension logs before it imports the event loop): ``json`` is
imported on the first line actually written.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from typing import IO, Final

from fastproxy.runtime_api import ENV_LOG_LEVEL

DEBUG: Final = 10
INFO: Final = 20
WARNING: Final = 30
ERROR: Final = 40
OFF: Final = 100

LEVELS: Final[Mapping[str, int]] = {
    "debug": DEBUG,
    "info": INFO,
    "warning": WARNING,
    "warn": WARNING,
    "error": ERROR,
    "off": OFF,
}
DEFAULT_LEVEL: Final = WARNING
_NAMES: Final[Mapping[int, str]] = {
    DEBUG: "DEBUG",
    INFO: "INFO",
    WARNING: "WARN",
    ERROR: "ERROR",
    50: "FATAL",
}


def parse_level(text: str) -> int:
    """Map a level name (case-insensitive) to its number; ``ValueError`` names the choices."""
    level = LEVELS.get(text.strip().lower())
    if level is None:
        choices = ", ".join(name for name in LEVELS if name != "warn")
        raise ValueError(f"{ENV_LOG_LEVEL}={text!r} is not a log level; use one of {choices}")
    return level


def level_from_env(env: Mapping[str, str] | None = None) -> int:
    """The level ``FASTPROXY_LOG_LEVEL`` selects (warning when unset); ``ValueError`` if bad."""
    value = (os.environ if env is None else env).get(ENV_LOG_LEVEL, "")
    return parse_level(value) if value.strip() else DEFAULT_LEVEL


class JsonLogger:
    """Writes one JSON object per line to a stream (stderr by default).

    Example::

        log = JsonLogger("fastproxy.extension", level=INFO)
        log.info("registered", extension_id=ident, elapsed_ms=12.5)
        # {"timestamp":"2025-01-01T00:00:00.000Z","level":"INFO",
        #  "logger":"fastproxy.extension","message":"registered",...}
    """

    __slots__ = ("level", "name", "stream")

    def __init__(self, name: str, level: int = DEFAULT_LEVEL, stream: IO[str] | None = None):
        self.name = name
        self.level = level
        self.stream = stream

    def enabled(self, level: int) -> bool:
        return level >= self.level

    def log(self, level: int, message: str, **fields: object) -> None:
        if level < self.level:
            return
        import json

        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        record: dict[str, object] = {
            "timestamp": f"{stamp}.{int(now * 1000) % 1000:03d}Z",
            "level": _NAMES.get(level, str(level)),
            "logger": self.name,
            "message": message,
        }
        record.update(fields)
        line = json.dumps(record, separators=(",", ":"), default=str) + "\n"
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            # One write per record keeps lines whole when several threads log.
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stderr must not take the proxy down

    def debug(self, message: str, **fields: object) -> None:
        self.log(DEBUG, message, **fields)

    def info(self, message: str, **fields: object) -> None:
        self.log(INFO, message, **fields)

    def warning(self, message: str, **fields: object) -> None:
        self.log(WARNING, message, **fields)

    def error(self, message: str, **fields: object) -> None:
        self.log(ERROR, message, **fields)


def get_logger(name: str, env: Mapping[str, str] | None = None) -> JsonLogger:
    """A logger at the level ``FASTPROXY_LOG_LEVEL`` selects; a bad value falls back to warning.

    Callers that must reject a bad value (the extension's start-up) use ``level_from_env``.
    """
    try:
        level = level_from_env(env)
    except ValueError:
        level = DEFAULT_LEVEL
    return JsonLogger(name, level)


def route_stdlib_logging(level: int, name: str = "fastproxy") -> None:
    """Send the stdlib ``logging`` records of logger ``name`` (the proxy's) out as JSON lines.

    The proxy modules log through ``logging``; in the extension their records must come out in
    the same one-object-per-line form as everything else, at the same level.
    """
    import logging

    class JsonHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                message = record.getMessage()
            except (TypeError, ValueError):
                message = str(record.msg)
            JsonLogger(record.name, DEBUG).log(record.levelno, message)

    target = logging.getLogger(name)
    target.handlers[:] = [JsonHandler()]
    target.setLevel(level)
    target.propagate = False
