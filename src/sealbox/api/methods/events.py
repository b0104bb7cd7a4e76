"""ListEvents: the audit log as Element events.

Element's event log records what happened on the cluster; sealbox's record of that is the audit
log (every state-changing call, and the key operations the cluster makes on its own: creating,
fetching, destroying master keys), so ListEvents serves it with Element's ``EventInfo`` fields.
Entries carry parameter names, never values (``cluster/audit.py``). Filters on node, drive or
service match nothing but events of the whole cluster (``nodeID`` 0 and so on), as Element's
cluster events do.
"""

from __future__ import annotations

import json

from sealbox.api.params import ID, P
from sealbox.api.registry import CallContext, Params, Result, lookup, method
from sealbox.store.base import Doc

EVENT_TYPES = ("apiEvent", "encryptionAtRestEvent", "serviceEvent")
DEFAULT_MAX = 1000


@method(
    "ListEvents",
    P("maxEvents", "int", minimum=1, maximum=100_000),
    ID("startEventID", required=False), ID("endEventID", required=False),
    P("eventType", "str", choices=EVENT_TYPES),
    ID("serviceID", required=False), ID("nodeID", required=False),
    ID("driveID", required=False),
    P("startReportTime", "str", max_len=64), P("endReportTime", "str", max_len=64),
    P("startPublishTime", "str", max_len=64), P("endPublishTime", "str", max_len=64),
    category="reporting",
)
def list_events(ctx: CallContext, params: Params) -> Result:
    start, end = params["startEventID"] or 0, params["endEventID"]
    lo = params["startReportTime"] or params["startPublishTime"]
    hi = params["endReportTime"] or params["endPublishTime"]
    events = []
    for event_id, entry in ctx.cluster.audit.numbered():
        if event_id < start or (end is not None and event_id > end):
            continue
        # ISO 8601 times of one format compare as text
        if (lo and entry["time"] < lo) or (hi and entry["time"] > hi):
            continue
        event = _event(event_id, entry)
        if params["eventType"] not in (None, event["eventInfoType"]):
            continue
        if any(params[k] is not None for k in ("serviceID", "nodeID", "driveID")):
            continue  # every event is the whole cluster's (its IDs are 0)
        events.append(event)
    limit = params["maxEvents"] or DEFAULT_MAX
    return {"eventQueueType": "", "events": events[-limit:]}


def _event(event_id: int, entry: Doc) -> Doc:
    user, method, outcome = entry["user"], entry["method"], entry["outcome"]
    message = f"{method} by {user}: {outcome}"
    if entry.get("detail"):
        message += f" ({entry['detail']})"
    return {
        "eventID": event_id, "severity": 0 if outcome == "success" else 1,
        "eventInfoType": _kind(method), "message": message,
        "serviceID": 0, "nodeID": 0, "driveID": 0, "driveIDs": [],
        "timeOfReport": entry["time"], "timeOfPublish": entry["time"],
        "details": json.dumps({"user": user, "method": method, "params": entry["params"],
                               "outcome": outcome, "detail": entry.get("detail", "")}),
    }


def _kind(method: str) -> str:
    """A call of an API method is an ``apiEvent``. The rest are what the cluster did: a key
    operation (creating, fetching, destroying a master or authentication key, on behalf of an
    admin's rekey or by itself) is an ``encryptionAtRestEvent``, anything else (a local
    password reset) a ``serviceEvent``."""
    if lookup(method) is not None:
        return "apiEvent"
    return "encryptionAtRestEvent" if "Key" in method else "serviceEvent"
