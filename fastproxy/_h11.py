"""Select the h11 build: the mypyc-compiled ``h11_mypyc`` when installed, else pure h11.

Both expose the same API; the compiled one spends about a third of the CPU per message.
``FASTPROXY_H11=pure`` forces the pure-Python build (the test suite runs against both).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from fastproxy.runtime_api import ENV_H11

if TYPE_CHECKING:
    import h11
    from h11._headers import Headers
else:
    if os.environ.get(ENV_H11, "auto") == "pure":
        import h11
        from h11._headers import Headers
    else:
        try:
            import h11_mypyc as h11
            from h11_mypyc._headers import Headers
        except ImportError:
            import h11
            from h11._headers import Headers

BUILD: str = "h11-mypyc" if h11.__name__ == "h11_mypyc" else "h11"

__all__ = ("BUILD", "Headers", "h11")
