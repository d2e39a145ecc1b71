"""fastproxy: a streaming AWS Lambda Runtime API proxy extension on uvloop and h11."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ("__version__",)
