"""Key-slot rules, as pure functions over a header's two slots (DESIGN.md "Rekey").

Invariant kept by every function here: after each header write at least one slot holds the DEK
wrapped by a master key the cluster still has. ``stage`` never touches the slot the drive was
unlocked with; ``retire`` never clears the last slot. Because each change is one header write
(A/B copies, see header.py), a crash leaves either the state before or the state after.
"""

from __future__ import annotations

from sealbox.storage.drive_errors import DriveKeySlotError
from sealbox.storage.header import KeySlot, Slots


def unlock_order(slots: Slots) -> list[KeySlot]:
    """In-use slots, newest generation first: the newest wrap is preferred, but an older one
    still opens the drive when the newest key is not (yet, or any more) available."""
    return sorted((s for s in slots if s is not None), key=lambda s: s.generation, reverse=True)


def _with(slots: Slots, index: int, slot: KeySlot | None) -> Slots:
    return (slot, slots[1]) if index == 0 else (slots[0], slot)


def _spare_index(slots: Slots, new_mk_id: str, protected_mk_id: str) -> int:
    for index, slot in enumerate(slots):
        if slot is not None and slot.master_key_id == new_mk_id:
            return index  # re-staging the same key (a rekey rolled forward twice)
    for index, slot in enumerate(slots):
        if slot is None:
            return index
    for index, slot in enumerate(slots):
        if slot is not None and slot.master_key_id != protected_mk_id:
            return index
    raise DriveKeySlotError("no spare key slot: both hold the key in use")


def stage(slots: Slots, new_mk_id: str, wrapped_dek: bytes, protected_mk_id: str) -> Slots:
    """Slots with the DEK wrapped by ``new_mk_id`` in the spare slot at the next generation.
    ``protected_mk_id`` is the key that unlocked the drive: its slot is never overwritten."""
    index = _spare_index(slots, new_mk_id, protected_mk_id)
    newest = max((s.generation for s in slots if s is not None), default=0)
    current = slots[index]
    if current is not None and current.generation == newest and current.master_key_id == new_mk_id:
        generation = newest
    else:
        generation = newest + 1
    return _with(slots, index, KeySlot(generation, new_mk_id, wrapped_dek))


def retire(slots: Slots, mk_id: str) -> Slots:
    """Slots without the one wrapped by ``mk_id`` (unchanged if there is none)."""
    for index, slot in enumerate(slots):
        if slot is not None and slot.master_key_id == mk_id:
            if slots[1 - index] is None:
                raise DriveKeySlotError(
                    f"cannot retire master key {mk_id}: it wraps the drive's only key slot"
                )
            return _with(slots, index, None)
    return slots
