"""Volume QoS through the official SDK and raw JSON-RPC against a real sealbox process: QoS is
recorded, not enforced, but validated as Element does (ranges, minIOPS <= maxIOPS <=
burstIOPS, known members of the right type); a refusal names the field and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from solidfire.common import ApiServerError
from solidfire.models import QoS

from tests.support.proc import SealboxProcess

MIB = 1 << 20


@pytest.fixture(scope="module")
def account(sealbox: SealboxProcess) -> int:
    return int(sealbox.element().add_account(username="qos").account_id)


def _create(sealbox: SealboxProcess, account: int, name: str) -> int:
    return int(sealbox.element().create_volume(name=name, account_id=account,
                                               total_size=MIB).volume_id)


def _shown(sealbox: SealboxProcess, vid: int) -> dict[str, Any]:
    volume: dict[str, Any] = sealbox.rpc("ListVolumes", {"volumeIDs": [vid]})["result"][
        "volumes"][0]
    return volume


def _refused(sealbox: SealboxProcess, method: str, params: dict[str, Any]) -> str:
    """The Element error of a refused call: HTTP 200, xInvalidParameter, code 500."""
    response = sealbox.post({"method": method, "params": params, "id": 7})
    assert response.status_code == 200
    error: dict[str, Any] = response.json()["error"]
    assert error["name"] == "xInvalidParameter" and error["code"] == 500, error
    message: str = error["message"]
    return message


BAD_QOS = [
    ({"minIOPS": 100000, "maxIOPS": 1},
     "qos.minIOPS must be at most qos.maxIOPS (100000 > 1)"),
    ({"minIOPS": 49}, "qos.minIOPS is 49, out of range (50 to 15000)"),
    ({"minIOPS": 15001, "maxIOPS": 20000, "burstIOPS": 20000},
     "qos.minIOPS is 15001, out of range (50 to 15000)"),
    ({"maxIOPS": 99}, "qos.maxIOPS is 99, out of range (100 to 200000)"),
    ({"burstIOPS": 200001}, "qos.burstIOPS is 200001, out of range (100 to 200000)"),
    ({"maxIOPS": 20000},
     "qos.maxIOPS must be at most qos.burstIOPS (20000 > 15000, the current qos.burstIOPS)"),
    ({"maxIOPS": 5000, "burstIOPS": 4000},
     "qos.maxIOPS must be at most qos.burstIOPS (5000 > 4000)"),
    ({"minIOPS": "100"}, "qos.minIOPS must be an integer, not '100'"),
    ({"maxIOPS": True}, "qos.maxIOPS must be an integer, not True"),
    ({"burstIOPS": 1000.5}, "qos.burstIOPS must be an integer, not 1000.5"),
    ({"minIops": 100}, "unknown member qos.minIops"),
    ({"curve": {"4096": "100"}}, "qos.curve must be an object of integers"),
]


@pytest.mark.parametrize(("qos", "why"), BAD_QOS)
def test_modify_volume_refuses_bad_qos(sealbox: SealboxProcess, account: int,
                                       qos: dict[str, Any], why: str) -> None:
    vid = _create(sealbox, account, f"mq{BAD_QOS.index((qos, why))}")
    before = _shown(sealbox, vid)
    message = _refused(sealbox, "ModifyVolume", {
        "volumeID": vid, "qos": qos, "access": "readOnly", "totalSize": 2 * MIB})
    assert message.startswith("Invalid parameter 'qos': ") and why in message
    assert _shown(sealbox, vid) == before  # not the QoS, nor the access, nor the size


@pytest.mark.parametrize(("qos", "why"), BAD_QOS)
def test_create_volume_refuses_bad_qos(sealbox: SealboxProcess, account: int,
                                       qos: dict[str, Any], why: str) -> None:
    name = f"cq{BAD_QOS.index((qos, why))}"
    message = _refused(sealbox, "CreateVolume", {
        "name": name, "accountID": account, "totalSize": MIB, "qos": qos})
    assert why.replace("current", "default") in message
    assert sealbox.rpc("ListVolumes", {"volumeName": name})["result"]["volumes"] == []


def test_sdk_sees_the_element_error(sealbox: SealboxProcess, account: int) -> None:
    sf = sealbox.element()
    vid = _create(sealbox, account, "sdk-qos")
    with pytest.raises(ApiServerError) as refused:
        sf.modify_volume(volume_id=vid, qos=QoS(min_iops=100000, max_iops=1))
    assert refused.value.error_name == "xInvalidParameter"
    assert "qos.minIOPS must be at most qos.maxIOPS (100000 > 1)" in refused.value.message
    qos = sf.list_volumes(volume_ids=[vid]).volumes[0].qos
    assert (qos.min_iops, qos.max_iops, qos.burst_iops) == (50, 15000, 15000)


def test_limits_are_accepted_and_members_not_given_are_kept(sealbox: SealboxProcess,
                                                            account: int) -> None:
    sf = sealbox.element()
    low = sf.create_volume(name="qos-low", account_id=account, total_size=MIB,
                           qos=QoS(min_iops=50, max_iops=100, burst_iops=100)).volume
    assert (low.qos.min_iops, low.qos.max_iops, low.qos.burst_iops) == (50, 100, 100)
    vid = low.volume_id
    sf.modify_volume(volume_id=vid, qos=QoS(min_iops=15000, max_iops=200000,
                                             burst_iops=200000))
    sf.modify_volume(volume_id=vid, qos=QoS(max_iops=150000))  # Element keeps the others
    qos = sf.list_volumes(volume_ids=[vid]).volumes[0].qos
    assert (qos.min_iops, qos.max_iops, qos.burst_iops) == (15000, 150000, 200000)


@pytest.mark.parametrize(("extra", "named"), [
    ({"qosPolicyID": 5}, "'qosPolicyID'"),
    ({"associateWithQoSPolicy": True}, "'associateWithQoSPolicy'"),
    ({"enableSnapMirrorReplication": True}, "'enableSnapMirrorReplication'"),
    ({"fifoSize": 0}, "'fifoSize'"),
    ({"fifoSize": 33}, "'fifoSize'"),
    ({"minFifoSize": -1}, "'minFifoSize'"),
    ({"fifoSize": 4, "minFifoSize": 5}, "'minFifoSize'"),
    ({"minFifoSize": 25}, "'minFifoSize'"),  # above the default fifoSize of 24
])
def test_create_volume_refuses_what_sealbox_lacks_or_cannot_hold(
        sealbox: SealboxProcess, account: int, extra: dict[str, Any], named: str) -> None:
    before = sealbox.rpc("ListVolumes")["result"]["volumes"]
    message = _refused(sealbox, "CreateVolume", {"name": "fifo-bad", "accountID": account,
                                                 "totalSize": MIB, **extra})
    assert named in message, message
    assert sealbox.rpc("ListVolumes")["result"]["volumes"] == before


def test_fifo_sizes_are_recorded_and_reported(sealbox: SealboxProcess, account: int) -> None:
    vid = int(sealbox.element().create_volume(name="fifo-ok", account_id=account,
                                              total_size=MIB, fifo_size=8,
                                              min_fifo_size=2).volume_id)
    shown = _shown(sealbox, vid)
    assert (shown["fifoSize"], shown["minFifoSize"]) == (8, 2)
    plain = _shown(sealbox, _create(sealbox, account, "fifo-default"))
    assert (plain["fifoSize"], plain["minFifoSize"]) == (24, 0)
