"""GetAsyncResult, ListAsyncResults."""

from __future__ import annotations

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, method


@method("GetAsyncResult", ID("asyncHandle"), P("keepResult", "bool", default=False))
def get_async_result(ctx: CallContext, params: Params) -> Result:
    return ctx.cluster.jobs.get(params["asyncHandle"], keep=params["keepResult"])


@method("ListAsyncResults", P("asyncResultTypes", "str", array=True, max_len=64, max_items=64))
def list_async_results(ctx: CallContext, params: Params) -> Result:
    return {"asyncHandles": ctx.cluster.jobs.list(params["asyncResultTypes"])}
