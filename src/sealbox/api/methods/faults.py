"""ListClusterFaults, ClearClusterFaults."""

from __future__ import annotations

from sealbox.api.params import P
from sealbox.api.registry import CallContext, Params, Result, method
from sealbox.cluster.faults import FaultFilter

_FILTERS = ("current", "resolved", "all")


@method(
    "ListClusterFaults",
    P("bestPractices", "bool", default=True),
    P("faultTypes", "str", default="all", choices=_FILTERS),
)
def list_cluster_faults(ctx: CallContext, params: Params) -> Result:
    faults = ctx.cluster.faults.list(FaultFilter(params["faultTypes"]))
    if not params["bestPractices"]:
        faults = [f for f in faults if f["severity"] != "bestPractice"]
    return {"faults": faults}


@method(
    "ClearClusterFaults",
    P("faultTypes", "str", default="resolved", choices=_FILTERS),
    category="clusterAdmin", mutates=True,
)
def clear_cluster_faults(ctx: CallContext, params: Params) -> Result:
    ctx.cluster.faults.clear(FaultFilter(params["faultTypes"]))
    return {}
