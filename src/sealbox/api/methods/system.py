"""GetAPI: the versions this cluster speaks."""

from __future__ import annotations

import re

from sealbox.api.registry import REGISTRY, CallContext, Params, Result, method

CURRENT_VERSION = "12.3"
# Element's documented list (strings, as real clusters send them; the SDK joins them as text).
SUPPORTED_VERSIONS = (
    "1.0", "2.0", "3.0", "4.0", "5.0", "5.1", "6.0", "7.0", "7.1", "7.2", "7.3", "7.4", "8.0",
    "8.1", "8.2", "8.3", "8.4", "8.5", "8.6", "8.7", "9.0", "9.1", "9.2", "9.3", "9.4", "9.5",
    "9.6", "10.0", "10.1", "10.2", "10.3", "10.4", "10.5", "10.6", "10.7", "11.0", "11.1",
    "11.3", "11.5", "11.7", "11.8", "12.0", "12.2", "12.3",
)
_SUPPORTED_FLOATS = frozenset(float(v) for v in SUPPORTED_VERSIONS)
_VERSION_TEXT = re.compile(r"^[1-9][0-9]?(\.[0-9]{1,2})?$", re.ASCII)


def is_supported(version: str) -> bool:
    """``/json-rpc/<version>``: ``7``, ``7.0`` and ``12.3`` all name supported versions."""
    if _VERSION_TEXT.match(version) is None:
        return False
    return float(version) in _SUPPORTED_FLOATS


@method("GetAPI", category="any", bootstrap=True)
def get_api(ctx: CallContext, params: Params) -> Result:
    names = sorted(m.name for m in REGISTRY.values())
    return {
        "currentVersion": CURRENT_VERSION,
        "supportedVersions": list(SUPPORTED_VERSIONS),
        CURRENT_VERSION: names,
    }
