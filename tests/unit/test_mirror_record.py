"""The record of the metadata mirror set (sealbox.cluster.mirror_record): durable, private,
and never guessed at when it does not read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sealbox.cluster.mirror_record import MirrorRecord


def test_nothing_recorded_reads_as_none_and_a_record_reads_back(tmp_path: Path) -> None:
    record = MirrorRecord(tmp_path / "m.json")
    assert record.read() is None
    assert record.witness().recorded is None
    record.write([30, 10])
    assert record.read() == frozenset({10, 30})
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o600
    record.witness().record([20])  # what the engine calls
    assert record.read() == frozenset({20})
    assert json.loads((tmp_path / "m.json").read_text()) == {"mirrors": [20]}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]  # no temporary left


@pytest.mark.parametrize("text", ["", "{", "[]", "{}", '{"mirrors": "10"}', '{"mirrors": []}',
                                  '{"mirrors": [1.5]}', '{"mirrors": [true]}'])
def test_a_damaged_record_raises_instead_of_guessing(tmp_path: Path, text: str) -> None:
    (tmp_path / "m.json").write_text(text)
    with pytest.raises(ValueError):
        MirrorRecord(tmp_path / "m.json").read()
