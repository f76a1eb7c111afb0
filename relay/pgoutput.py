"""Read inserts out of ``pgoutput`` messages (logical replication protocol 1).

Enough of the protocol to list one column of the rows a slot still holds:
Relation messages name the columns, Insert messages carry the new tuples.
Everything else (Begin, Commit, Origin, Type, Truncate, ...) is skipped.
"""

import struct
from collections.abc import Iterable


class ProtocolError(ValueError):
    """A message that does not parse as pgoutput protocol 1."""


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ProtocolError("message ends early")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big", signed=True)

    def string(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolError("unterminated string")
        text = self.data[self.pos : end].decode()
        self.pos = end + 1
        return text


def _relation(r: _Reader) -> tuple[int, str, list[str]]:
    oid = r.int(4)
    r.string()  # namespace
    name = r.string()
    r.int(1)  # replica identity
    columns = []
    for _ in range(r.int(2)):
        r.int(1)  # flags
        columns.append(r.string())
        struct.unpack(">iI", r.take(8))  # type oid, type modifier
    return oid, name, columns


def _tuple(r: _Reader) -> list[str | None]:
    values = []
    for _ in range(r.int(2)):
        kind = r.take(1)
        if kind in (b"n", b"u"):
            values.append(None)
        elif kind == b"t":
            values.append(r.take(r.int(4)).decode())
        else:
            raise ProtocolError(f"tuple value kind {kind!r}")
    return values


def inserted(messages: Iterable[bytes], table: str, column: str) -> list[str]:
    """The ``column`` values of the rows inserted into ``table``, in WAL order."""
    relations: dict[int, int | None] = {}  # relation oid -> index of column
    found = []
    for message in messages:
        r = _Reader(bytes(message))
        kind = r.take(1)
        if kind == b"R":
            oid, name, columns = _relation(r)
            relations[oid] = columns.index(column) if name == table else None
        elif kind == b"I":
            oid = r.int(4)
            if r.take(1) != b"N":
                raise ProtocolError("insert without a new tuple")
            index = relations.get(oid)
            if index is not None:
                found.append(_tuple(r)[index])
    return found
