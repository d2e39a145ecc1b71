"""Sample functions the sandbox demo runs (``examples/functions/`` links to these files).

- ``echo.py``: a Python handler module for ``awslambdaric`` (``echo.handler``, ``echo.fail``,
  ``echo.big``).
- ``streaming_runtime.py``: a minimal custom runtime that streams its responses.
"""

from __future__ import annotations

from pathlib import Path

SAMPLES_DIR = Path(__file__).resolve().parent
