"""Encryption at rest: GetSoftwareEncryptionAtRestInfo (software, the master key) and
EnableEncryptionAtRest, DisableEncryptionAtRest, GetEncryptionAtRestInfo (hardware, the
self-encrypting drives and their authentication keys).

Enable and Disable are asynchronous without an async handle, as in Element: they return ``{}``
and ``GetClusterInfo.encryptionAtRestState`` moves ``enabling`` → ``enabled`` (or
``disabling`` → ``disabled``) as the drives are switched.
"""

from __future__ import annotations

from sealbox.api.params import ID
from sealbox.api.registry import CallContext, Params, Result, method


@method("GetSoftwareEncryptionAtRestInfo")
def get_software_encryption_at_rest_info(ctx: CallContext, params: Params) -> Result:
    return ctx.cluster.sear.info()


@method("EnableEncryptionAtRest", ID("keyProviderID", required=False),
        category="clusterAdmin", mutates=True)
def enable_encryption_at_rest(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.write() as txn:
        ctx.cluster.ear.enable(txn, params["keyProviderID"])
    ctx.cluster.ear.kick()
    return {}


@method("DisableEncryptionAtRest", category="clusterAdmin", mutates=True)
def disable_encryption_at_rest(ctx: CallContext, params: Params) -> Result:
    with ctx.cluster.store.write() as txn:
        ctx.cluster.ear.disable(txn)
    ctx.cluster.ear.kick()
    return {}


@method("GetEncryptionAtRestInfo")
def get_encryption_at_rest_info(ctx: CallContext, params: Params) -> Result:
    return ctx.cluster.ear.info()
