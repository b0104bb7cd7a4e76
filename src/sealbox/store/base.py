"""The configuration store's interface.

Cluster configuration is a tree of small JSON documents addressed by collection and ID
(``drives/3``, ``asyncresults/12``, ``cluster/0``), read and changed in transactions. That is the
shape of the coordination stores real clusters use (Element keeps its configuration in
ZooKeeper, which is why its errors speak of paths such as ``/asyncresults/1``), so a distributed
implementation can replace the SQLite one without touching the services above it.

Documents are plain JSON-compatible dicts; services own their schemas.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

Doc = dict[str, Any]


class Txn(Protocol):
    """One transaction. Writes are visible to later reads of the same transaction and become
    durable together when the transaction commits; an exception aborts all of them."""

    def get(self, coll: str, doc_id: int) -> Doc | None: ...

    def put(self, coll: str, doc_id: int, doc: Doc) -> None: ...

    def delete(self, coll: str, doc_id: int) -> bool:
        """Delete the document; False if it did not exist."""
        ...

    def list(self, coll: str) -> list[tuple[int, Doc]]:
        """Every document of ``coll``, ordered by ID."""
        ...

    def next_id(self, coll: str) -> int:
        """A new ID for ``coll``, never reused even after deletes (IDs start at 1)."""
        ...


class ConfigStore(Protocol):
    def read(self) -> AbstractContextManager[Txn]:
        """A consistent snapshot for reading; writes through it are refused."""
        ...

    def write(self) -> AbstractContextManager[Txn]:
        """A serialised read-write transaction that commits durably on a clean exit."""
        ...

    def close(self) -> None: ...


def path_of(coll: str, doc_id: int) -> str:
    """The Element-style path of a document, as errors such as xDBNoSuchPath show it."""
    return f"/{coll}/{doc_id}"


def iter_docs(txn: Txn, coll: str) -> Iterator[Doc]:
    for _, doc in txn.list(coll):
        yield doc
