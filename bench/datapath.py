"""Data-path benchmark: how close sealbox's encrypted data path gets to the C references.

    .venv/bin/python bench/datapath.py [--size 256M] [--runs 3] [--batch 64] [--all-backends]

Part (a), the sector cipher alone: AES-256-XTS over 4 KiB sectors, each with its own tweak,
encrypted in multi-sector batches as a drive write does, against `openssl speed -evp
aes-256-xts -bytes 4096` run in the same invocation (one 4 KiB data unit per call there too).
Both are measured per CPU-second of user time (openssl speed's default divisor), and they
alternate for ``--runs`` turns keeping the best of each, so that load from other processes
does not decide the ratio. Absolute numbers drift between machines;
the ratio is the figure to watch (goal: >= 0.25). Part (b), the NBD path over an encrypted
drive, plugs in as another entry of PARTS.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sealbox.secrets import Secret
from sealbox.storage.blockdev import SECTOR_SIZE
from sealbox.storage.crypto import SectorCipher, available_backends

GOAL = 0.25
OPENSSL_SECONDS = 1  # per run; runs alternate with ours


@dataclass(frozen=True)
class Result:
    name: str
    bytes_per_second: float

    @property
    def mb_per_second(self) -> float:
        return self.bytes_per_second / 1e6


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def openssl_xts_speed(seconds: int = OPENSSL_SECONDS) -> Result | None:
    """`openssl speed` at 4 KiB blocks; its table is in 1000s of bytes per second."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    command = [openssl, "speed", "-evp", "aes-256-xts", "-bytes", "4096"]
    command += ["-seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    match = re.search(r"^AES-256-XTS\s+([\d.]+)k\s*$", done.stdout, re.MULTILINE | re.IGNORECASE)
    if match is None:
        raise RuntimeError(f"cannot parse openssl speed output:\n{done.stdout}")
    return Result("openssl speed -evp aes-256-xts (4 KiB)", float(match.group(1)) * 1000)


def sector_cipher_speed(cipher: SectorCipher, size: int, batch: int) -> float:
    """Bytes/s encrypting ``size`` bytes in ``batch``-sector requests with advancing sector
    numbers into a preallocated buffer, which is what a drive write does."""
    source = os.urandom(batch * SECTOR_SIZE)
    target = bytearray(len(source))
    requests = max(1, size // len(source))
    start = _cpu_seconds()
    for request in range(requests):
        cipher.encrypt_into(request * batch, source, target)
    return requests * len(source) / (_cpu_seconds() - start)


def _cpu_seconds() -> float:
    """User CPU time of this process: the divisor `openssl speed` uses (unless -elapsed), so
    both figures mean bytes per CPU-second and other processes' load does not skew the ratio.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


def interleaved(args: argparse.Namespace, backends: tuple[str, ...]) -> list[Result]:
    """Best of ``runs`` for each backend and for openssl, measured in turns: on a shared
    machine load comes and goes, and the best run is the one least disturbed by it."""
    ciphers = {b: SectorCipher(Secret(os.urandom(64)), backend=b) for b in backends}
    rates: dict[str, list[float]] = {b: [] for b in backends}
    reference: list[Result] = []
    for _ in range(args.runs):
        for backend, cipher in ciphers.items():
            rates[backend].append(sector_cipher_speed(cipher, args.size, args.batch))
        measured = openssl_xts_speed(args.openssl_seconds)
        if measured is not None:
            reference.append(measured)
    results = [
        Result(f"sealbox SectorCipher[{b}] ({args.batch} x 4 KiB)", max(rates[b])) for b in backends
    ]
    if reference:
        results.append(max(reference, key=lambda r: r.bytes_per_second))
    return results


def report(results: list[Result], reference: Result | None) -> None:
    for result in results:
        line = f"{result.name:<48} {result.mb_per_second:10.0f} MB/s"
        if reference is not None:
            line += f"   ratio {result.bytes_per_second / reference.bytes_per_second:5.3f}"
        print(line)
    if reference is not None:
        print(f"{reference.name:<48} {reference.mb_per_second:10.0f} MB/s   (reference)")


def part_a(args: argparse.Namespace) -> bool:
    """The sector cipher against openssl; True if the fastest backend meets the goal."""
    print("== (a) sector cipher, AES-256-XTS, 4 KiB data units (best of runs) ==")
    backends = available_backends() if args.all_backends else available_backends()[:1]
    results = interleaved(args, backends)
    reference = results.pop() if len(results) > len(backends) else None
    report(results, reference)
    if reference is None:
        print("openssl not found: no reference, no ratio")
        return True
    ratio = results[0].bytes_per_second / reference.bytes_per_second
    print(f"goal: ratio >= {GOAL}: {'met' if ratio >= GOAL else 'NOT met'} ({ratio:.3f})")
    return ratio >= GOAL


PARTS: dict[str, Callable[[argparse.Namespace], bool]] = {"a": part_a}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--openssl-seconds", type=int, default=OPENSSL_SECONDS)
    parser.add_argument("--batch", type=int, default=64, help="sectors per request")
    parser.add_argument("--all-backends", action="store_true")
    parser.add_argument("--parts", default="".join(PARTS), help="which parts to run, e.g. 'a'")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    ok = True
    for name in args.parts:
        ok = PARTS[name](args) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
