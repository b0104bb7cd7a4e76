"""GetSoftwareEncryptionAtRestInfo."""

from __future__ import annotations

from sealbox.api.registry import CallContext, Params, Result, method


@method("GetSoftwareEncryptionAtRestInfo")
def get_software_encryption_at_rest_info(ctx: CallContext, params: Params) -> Result:
    return ctx.cluster.sear.info()
