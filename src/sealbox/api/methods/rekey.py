"""RekeySoftwareEncryptionAtRestMasterKey."""

from __future__ import annotations

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.sear import EXTERNAL, INTERNAL
from sealbox.errors import InvalidParameter


@method("RekeySoftwareEncryptionAtRestMasterKey",
        P("keyManagementType", "str", choices=("Internal", "External")),
        ID("keyProviderID", required=False), category="clusterAdmin", mutates=True)
def rekey(ctx: CallContext, params: Params) -> Result:
    kind, provider = params["keyManagementType"], params["keyProviderID"]
    if kind is None:  # Element: omitted means keep the current kind of key management
        with ctx.cluster.store.read() as txn:
            current = ctx.cluster.sear.current_key(txn)
        kind = "External" if current and current["keyManagementType"] == EXTERNAL else "Internal"
        if kind == "External" and provider is None and current is not None:
            provider = current["keyProviderID"]
    if kind == "External" and provider is None:
        raise InvalidParameter(
            "Invalid parameter 'keyProviderID': it is required when keyManagementType is "
            "External (see ListKeyProvidersKmip)."
        )
    if kind == "Internal" and provider is not None:
        raise InvalidParameter(
            "Invalid parameter 'keyProviderID': it is only valid when keyManagementType is "
            "External."
        )
    management = EXTERNAL if kind == "External" else INTERNAL
    handle = ctx.cluster.rekey.start(ctx.principal.username, management, provider)
    return {"asyncHandle": handle}
