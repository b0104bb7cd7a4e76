# The C extension built from _native.c (optional: see setup.py).

class Hasher:
    def __init__(self, key_block: bytes) -> None: ...
    def tokens(
        self, volume_id: int, first_sector: int, data: bytes | bytearray | memoryview, /
    ) -> list[bytes]: ...

def crypt_units(
    context: int,
    first_unit: int,
    unit_size: int,
    src: bytes | bytearray | memoryview,
    dst: bytearray | memoryview,
    /,
) -> bool: ...
