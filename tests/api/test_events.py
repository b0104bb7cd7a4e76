"""ListEvents (the audit log as Element events) and ListVolumesForAccount, through the official
SDK against a real process."""

from __future__ import annotations

import json

from solidfire.common import ApiServerError

from tests.support.proc import SealboxProcess, wait_until

MIB = 1 << 20


def test_events_show_who_changed_what_without_values(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    before = sf.list_events().events
    first_new = max((e.event_id for e in before), default=0) + 1
    account = sf.add_account(username="evt-tenant").account_id
    sf.create_volume(name="evt-vol", account_id=account, total_size=MIB)
    refused = sealbox.rpc("CreateVolume", {"name": "evt-vol", "accountID": account,
                                           "totalSize": MIB})
    assert refused["error"]["name"] == "xObjectExists"
    sf.add_cluster_admin(username="evt-admin", password="evt-secret-1", access=["read"],
                         accept_eula=True)

    events = sf.list_events(start_event_id=first_new).events
    got = [(e.event_info_type, e.message.split(":")[0], e.severity) for e in events]
    assert got == [("apiEvent", "AddAccount by admin", 0),
                   ("apiEvent", "CreateVolume by admin", 0),
                   ("apiEvent", "CreateVolume by admin", 1),
                   ("apiEvent", "AddClusterAdmin by admin", 0)]
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
    details = json.loads(events[-1].details)
    assert details["params"] == ["acceptEula", "access", "password", "username"]
    assert "evt-secret-1" not in json.dumps([vars(e) for e in events], default=str)
    assert all(e.node_id == 0 and e.drive_ids == [] for e in events)

    assert [e.event_id for e in sf.list_events(max_events=2).events] == \
        [e.event_id for e in events[-2:]]
    assert sf.list_events(start_event_id=first_new, node_id=3).events == []
    only = sf.list_events(start_event_id=first_new, end_event_id=first_new).events
    assert [e.message.split(":")[0] for e in only] == ["AddAccount by admin"]


def test_what_the_cluster_does_itself_is_an_encryption_event(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    since = max((e.event_id for e in sf.list_events().events), default=0) + 1
    handle = sf.rekey_software_encryption_at_rest_master_key(
        key_management_type="Internal").async_handle
    wait_until(lambda: sealbox.rpc("GetAsyncResult", {"asyncHandle": handle,
                                                      "keepResult": True})
               ["result"]["status"] == "complete", 60, "the rekey")
    mine = sf.list_events(event_type="encryptionAtRestEvent", start_event_id=since).events
    kinds = {e.message.split(" by ")[0] for e in mine}
    assert {"CreateMasterKey", "DestroyInternalMasterKey"} <= kinds, kinds
    calls = sf.list_events(event_type="apiEvent", start_event_id=since).events
    assert [e.message.split(":")[0] for e in calls] == [
        "RekeySoftwareEncryptionAtRestMasterKey by admin"]


def test_bad_event_filters_are_named(sealbox: SealboxProcess) -> None:
    for params, named in [({"eventType": "noSuchEvent"}, "eventType"),
                          ({"maxEvents": 0}, "maxEvents"),
                          ({"startEventID": "first"}, "startEventID")]:
        error = sealbox.rpc("ListEvents", params)["error"]
        assert error["name"] == "xInvalidParameter" and f"'{named}'" in error["message"]


def test_volumes_for_an_account_include_deleted_ones(sealbox: SealboxProcess) -> None:
    sf = sealbox.element()
    mine = sf.add_account(username="va-mine").account_id
    other = sf.add_account(username="va-other").account_id
    kept = sf.create_volume(name="va-kept", account_id=mine, total_size=MIB).volume_id
    gone = sf.create_volume(name="va-gone", account_id=mine, total_size=MIB).volume_id
    sf.create_volume(name="va-theirs", account_id=other, total_size=MIB)
    sf.delete_volume(gone)
    listed = sf.list_volumes_for_account(mine).volumes
    assert [(v.volume_id, v.status) for v in listed] == [(kept, "active"), (gone, "deleted")]
    assert sf.list_volumes_for_account(mine, limit=1).volumes[0].volume_id == kept
    try:
        sf.list_volumes_for_account(999_999)
    except ApiServerError as e:
        assert e.error_name == "xAccountIDDoesNotExist"
    else:
        raise AssertionError("an unknown account must be an error")
