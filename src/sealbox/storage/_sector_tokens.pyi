# The C extension built from _sector_tokens.c (optional: see setup.py).

class Hasher:
    def __init__(self, key_block: bytes) -> None: ...
    def tokens(
        self, volume_id: int, first_sector: int, data: bytes | bytearray | memoryview, /
    ) -> list[bytes]: ...
