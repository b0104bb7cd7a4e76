"""Part (c) of bench/datapath.py: the drive stack alone.

A ``Disk`` (``Drive`` on an emulated self-encrypting drive on a sparse file, software
encryption on, so two XTS layers), 256 MiB written and read back in chunk-aligned 1 MiB and
256 KiB requests, CPU seconds per GiB (best of ``--runs``, a fresh drive each run). No goal: it
isolates the drive layers' cost from the engine and NBD. Run it through datapath.py
(``--parts c``), which puts ``src/`` on the path.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile

from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.disk import Disk

MIB = 1 << 20
STACK_MIB = 256  # per request size and run: a fresh drive each time


def _stack_run(workdir: str, request: int) -> tuple[float, float]:
    """CPU seconds per GiB of chunk-aligned writes, then reads, in ``request``-sector requests
    on a fresh ``Disk`` (Drive on a SED on a sparse file) with software encryption on: both
    layers' ciphers, fresh keys, so no starting iv is remembered from an earlier run."""
    data = os.urandom(MIB)
    path = os.path.join(workdir, "stack.img")
    with Disk.create(path, (STACK_MIB + 8) * MIB) as disk:
        drive = disk.drive()
        drive.enable_software_encryption("bench", Secret(os.urandom(32)))
        first = 256  # a chunk boundary, as the engine's data slots are
        spans = [(first + c * 256 + k, k) for c in range(STACK_MIB) for k in range(0, 256, request)]
        start = _process_cpu()
        for sector, k in spans:
            drive.write(sector, data[k * SECTOR_SIZE : (k + request) * SECTOR_SIZE])
        write = _process_cpu() - start
        start = _process_cpu()
        for sector, _ in spans:
            drive.read(sector, request)
        read = _process_cpu() - start
    os.unlink(path)
    gib = STACK_MIB / 1024
    return write / gib, read / gib


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime  # pwrite/preadv are system time


def part_c(args: argparse.Namespace) -> bool:
    """The Drive -> SED -> file stack without the engine or NBD (informational, no goal)."""
    print(f"== (c) drive stack (Drive on SED on file, encryption on), {STACK_MIB} MiB, "
          f"CPU s/GiB, best of {args.runs} ==")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="sealbox-stack-") as tmp:
        for request in (256, 64):
            runs = [_stack_run(tmp, request) for _ in range(args.runs)]
            print(f"  {request * SECTOR_SIZE // 1024:5} KiB requests: write "
                  f"{min(w for w, _ in runs):5.2f}   read {min(r for _, r in runs):5.2f}",
                  flush=True)
    return True
