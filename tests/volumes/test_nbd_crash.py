"""kill -9 of a real sealbox during a write storm through NBD, at many instants: after each
restart every write flushed before the kill reads back, and every sector reads as something
that was written there (or zeros) — never garbage, never an error."""

from __future__ import annotations

import random
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nbd.nbd_raw import FLUSH, Closed, RawClient, close_all
from tests.support.proc import SealboxProcess, wait_until

SECTOR = 4096
SECTORS = 512  # a 2 MiB volume: two chunks, so writes land in both
KILLS = 30


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SealboxProcess]:
    proc = SealboxProcess(tmp_path_factory.mktemp("nbdcrash") / "data", nodes=2,
                          extra=["--drives-per-node", "2"]).start()
    sf = proc.element()
    account = sf.add_account(username="storm").account_id
    sf.create_volume(name="storm", account_id=account, total_size=SECTORS * SECTOR)
    yield proc
    close_all()
    proc.stop()


def _content(round_no: int, seq: int, sector: int) -> bytes:
    return struct.pack(">III", round_no, seq, sector) * (SECTOR // 12) + b"\0" * (SECTOR % 12)


class Storm:
    """Writes random sectors, flushing every few writes, until the connection dies."""

    def __init__(self, port: int, round_no: int, rng: random.Random) -> None:
        self.client = RawClient(port)
        self.client.go("storm")
        self.round_no, self.rng = round_no, rng
        self.history: dict[int, list[int]] = {}  # sector -> seqs sent, in order
        self.durable: dict[int, int] = {}  # sector -> seq acknowledged before a completed flush
        self.acked: dict[int, int] = {}
        self.count = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        seq = 0
        try:
            while True:
                seq += 1
                sector = self.rng.randrange(SECTORS)
                self.history.setdefault(sector, []).append(seq)
                if self.client.write(sector * SECTOR, _content(self.round_no, seq, sector)):
                    return
                self.acked[sector] = seq
                self.count += 1
                if seq % 8 == 0:
                    snapshot = dict(self.acked)
                    if self.client.command(FLUSH) == 0:
                        self.durable.update(snapshot)
        except (Closed, OSError, AssertionError):
            return


def _check(cluster: SealboxProcess, storms: list[Storm]) -> None:
    client = RawClient(cluster.nbd_port)
    client.go("storm")
    for sector in range(SECTORS):
        error, data = client.read(sector * SECTOR, SECTOR)
        assert error == 0, f"sector {sector} read error {error}"
        if data == bytes(SECTOR):
            versions = []
        else:
            round_no, seq, at = struct.unpack(">III", data[:12])
            assert data == _content(round_no, seq, at) and at == sector, f"garbage in {sector}"
            versions = [(round_no, seq)]
            assert seq in storms[round_no].history.get(sector, []), f"{sector}: never written"
        # The newest round that flushed this sector decides what must at least be there.
        for storm in reversed(storms):
            if sector in storm.durable:
                assert versions, f"sector {sector}: a flushed write was lost"
                assert versions[0] >= (storm.round_no, storm.durable[sector]), sector
                break
    client.close()


def test_kill_9_during_a_write_storm(cluster: SealboxProcess, tmp_path: Path) -> None:
    rng = random.Random(7)
    storms: list[Storm] = []
    for round_no in range(KILLS):
        storm = Storm(cluster.nbd_port, round_no, rng)
        storms.append(storm)
        storm.thread.start()
        target = rng.randrange(5, 120)
        wait_until(lambda s=storm, t=target: s.count >= t or not s.thread.is_alive(), 30,
                   "writes to be acknowledged", interval=0.002)
        cluster.kill()
        storm.thread.join(10)
        storm.client.close()
        cluster.start()
        _check(cluster, storms)
    assert sum(len(s.durable) for s in storms) > KILLS  # flushes really happened
