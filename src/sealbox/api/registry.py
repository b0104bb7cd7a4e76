"""The method table: every Element method sealbox answers, with its declared parameters.

Modules under ``sealbox.api.methods`` register their methods with :func:`method`; dispatch is
a dictionary lookup on the lower-cased name (Element matches names case-insensitively).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sealbox.api.params import P

if TYPE_CHECKING:
    from sealbox.cluster.admins import Principal
    from sealbox.cluster.runtime import Cluster

Params = dict[str, Any]
Result = dict[str, Any]


@dataclass(frozen=True)
class CallContext:
    cluster: Cluster
    principal: Principal
    method: str


Handler = Callable[[CallContext, Params], Result]


@dataclass(frozen=True)
class Method:
    name: str
    params: tuple[P, ...]
    handler: Handler
    category: str
    mutates: bool
    bootstrap: bool


REGISTRY: dict[str, Method] = {}


def method(
    name: str, *params: P, category: str = "read", mutates: bool = False,
    bootstrap: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``name``. ``category`` is the admin access type that grants it; ``bootstrap``
    methods answer before the cluster exists (Element's node-level creation API)."""

    def register(fn: Handler) -> Handler:
        key = name.lower()
        if key in REGISTRY:
            raise RuntimeError(f"method {name} registered twice")
        REGISTRY[key] = Method(name, params, fn, category, mutates, bootstrap)
        return fn

    return register


def lookup(name: str) -> Method | None:
    return REGISTRY.get(name.lower())


def load_all() -> dict[str, Method]:
    """Import every method module so that the table is complete."""
    import sealbox.api.methods  # noqa: F401  (imports register the methods)

    return REGISTRY
