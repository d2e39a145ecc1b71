"""Select the h11 build for the general path: h11-mypyc when installed, else pure h11.

Both expose the same public API; the compiled one spends about a third of the CPU per message.
``FASTPROXY_H11=pure`` forces the pure-Python build.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastproxy.runtime_api import ENV_H11

if TYPE_CHECKING:
    import h11
else:
    if os.environ.get(ENV_H11, "auto") == "pure":
        import h11
    else:
        try:
            import h11_mypyc as h11
        except ImportError:
            import h11

BUILD: str = "h11-mypyc" if h11.__name__ == "h11_mypyc" else "h11"

__all__ = ("BUILD", "h11")
