"""Placement: two copies on two nodes, balanced by free space, deterministic."""

from __future__ import annotations

import pytest

from sealbox.storage.placement import DriveSpace, SlotAllocator, pick_mirrors, pick_pair
from sealbox.storage.volume_errors import NotEnoughSpace


def test_pair_takes_the_freest_drive_and_the_freest_on_another_node() -> None:
    drives = [DriveSpace(1, 1, 10), DriveSpace(2, 1, 50), DriveSpace(3, 2, 20),
              DriveSpace(4, 3, 30)]
    assert pick_pair(drives) == (2, 4)


def test_pair_never_puts_both_copies_on_one_node() -> None:
    drives = [DriveSpace(1, 1, 100), DriveSpace(2, 1, 90), DriveSpace(3, 2, 1)]
    assert pick_pair(drives) == (1, 3)


def test_ties_go_to_the_lower_drive_id() -> None:
    drives = [DriveSpace(7, 2, 5), DriveSpace(3, 1, 5), DriveSpace(5, 3, 5)]
    assert pick_pair(drives) == (3, 5)


@pytest.mark.parametrize("drives", [
    [],
    [DriveSpace(1, 1, 10), DriveSpace(2, 1, 10)],
    [DriveSpace(1, 1, 10), DriveSpace(2, 2, 0)],
])
def test_fewer_than_two_nodes_with_space_is_refused(drives: list[DriveSpace]) -> None:
    with pytest.raises(NotEnoughSpace, match="two different nodes"):
        pick_pair(drives)


def test_repeated_placement_stays_balanced_across_three_nodes() -> None:
    allocs = {d: SlotAllocator(30) for d in (1, 2, 3)}
    for _ in range(30):
        a, b = pick_pair(DriveSpace(d, d, al.free) for d, al in allocs.items())
        allocs[a].take()
        allocs[b].take()
    assert sorted(al.used for al in allocs.values()) == [20, 20, 20]


def test_mirrors_are_on_two_nodes() -> None:
    assert pick_mirrors([(5, 1), (3, 1), (9, 2), (4, 3)]) == [3, 4]
    assert pick_mirrors([(1, 1), (2, 1)]) == [1]


def test_allocator_reuses_the_lowest_freed_slot_and_refuses_when_full() -> None:
    alloc = SlotAllocator(4, used=[0, 2])
    assert [alloc.take(), alloc.take()] == [1, 3]
    with pytest.raises(NotEnoughSpace):
        alloc.take()
    alloc.give_back(2)
    alloc.give_back(0)
    assert alloc.take() == 0
    assert alloc.free == 1
