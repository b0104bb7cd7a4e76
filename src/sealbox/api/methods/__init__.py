"""Element methods, one module per family; importing this package registers them all."""

from sealbox.api.methods import (  # noqa: F401
    accounts,
    admins,
    async_results,
    cluster,
    drives,
    encryption,
    events,
    faults,
    keyproviders,
    keyservers,
    nodes,
    rekey,
    system,
    trust,
    volumes,
)
