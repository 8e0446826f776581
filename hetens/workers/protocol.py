"""The wire format between hetens and a member's worker process.

A message is one frame::

    MAGIC (4 bytes, b"HTW1") | header length (u32 LE) | body length (u64 LE)
    | header: UTF-8 JSON object | body: raw array bytes

The JSON header carries a ``kind`` (``load``, ``ready``, ``calculate``,
``result``, ``error``, ``close``), plain fields, and an ``arrays`` list of
``{"name", "dtype", "shape", "offset", "nbytes"}`` describing the body.
Arrays travel as their raw bytes (``numpy.ndarray.tobytes``) with a numpy
dtype string such as ``"<f8"``, so a float64 force array arrives bit for bit
as it left. Nothing is pickled: the worker gets a member spec and loads the
model itself.

This module needs only numpy and the standard library: it runs on both
sides, including inside member environments.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from hetens.io import keys

__all__ = [
    "PROTOCOL_VERSION",
    "Message",
    "ProtocolError",
    "encode",
    "decode_prefix",
    "decode_body",
    "read_message",
    "write_message",
    "atoms_payload",
    "atoms_from_payload",
    "payload_info",
    "jsonable",
]

#: Bumped whenever a message's meaning changes; client and worker must agree.
PROTOCOL_VERSION = 1

MAGIC = b"HTW1"
_PREFIX = struct.Struct("<4sIQ")
PREFIX_SIZE = _PREFIX.size
#: Largest header accepted (a corrupt length must not allocate gigabytes).
MAX_HEADER_BYTES = 16 * 1024 * 1024


class ProtocolError(RuntimeError):
    """A frame that is not a hetens worker message (corrupt stream or wrong program)."""


@dataclass
class Message:
    """One decoded message: its ``kind``, JSON ``fields`` and named arrays."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def jsonable(value: Any) -> Any:
    """``json.dumps`` hook: numpy scalars and arrays as numbers and lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


def encode(kind: str, fields: Mapping[str, Any] | None = None,
           arrays: Mapping[str, np.ndarray] | None = None) -> bytes:
    """One frame holding ``kind``, JSON-serialisable ``fields`` and numeric ``arrays``.

    Raises:
        TypeError: an array has an object or otherwise non-numeric dtype.
    """
    descriptors, chunks, offset = [], [], 0
    for name, value in (arrays or {}).items():
        array = np.asarray(value)
        if array.dtype.kind not in "biufc":
            raise TypeError(f"array {name!r} has dtype {array.dtype}; only numeric arrays can be sent")
        data = array.tobytes()
        descriptors.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape),
                            "offset": offset, "nbytes": len(data)})
        chunks.append(data)
        offset += len(data)
    header = json.dumps({"kind": kind, **(fields or {}), "arrays": descriptors}, default=jsonable).encode()
    return b"".join([_PREFIX.pack(MAGIC, len(header), offset), header, *chunks])


def decode_prefix(prefix: bytes) -> tuple[int, int]:
    """``(header_length, body_length)`` from the first :data:`PREFIX_SIZE` bytes of a frame."""
    magic, header_length, body_length = _PREFIX.unpack(prefix)
    if magic != MAGIC or header_length > MAX_HEADER_BYTES:
        raise ProtocolError(f"not a hetens worker frame (starts with {prefix[:8]!r})")
    return header_length, body_length


def decode_body(header: bytes, body: bytearray) -> Message:
    """A :class:`Message` from a frame's header and body bytes.

    Arrays are views into ``body`` (no copy) and writable when ``body`` is a
    ``bytearray``.
    """
    fields = json.loads(header)
    kind = fields.pop("kind")
    arrays = {}
    for d in fields.pop("arrays", []):
        dtype = np.dtype(d["dtype"])
        array = np.frombuffer(body, dtype=dtype, count=d["nbytes"] // dtype.itemsize, offset=d["offset"])
        arrays[d["name"]] = array.reshape(d["shape"])
    return Message(kind, fields, arrays)


def _read_exact(stream: BinaryIO, n: int) -> bytearray | None:
    buffer = bytearray(n)
    view, got = memoryview(buffer), 0
    while got < n:
        count = stream.readinto(view[got:])
        if not count:
            return None
        got += count
    return buffer


def read_message(stream: BinaryIO) -> Message | None:
    """Read one message from a blocking binary stream; ``None`` at end of stream."""
    prefix = _read_exact(stream, PREFIX_SIZE)
    if prefix is None:
        return None
    header_length, body_length = decode_prefix(bytes(prefix))
    header = _read_exact(stream, header_length)
    body = _read_exact(stream, body_length)
    if header is None or body is None:
        raise ProtocolError("the stream ended in the middle of a message")
    return decode_body(header, body)


def write_message(stream: BinaryIO, kind: str, fields: Mapping[str, Any] | None = None,
                  arrays: Mapping[str, np.ndarray] | None = None) -> None:
    """Write one message to a blocking binary stream and flush it."""
    stream.write(encode(kind, fields, arrays))
    stream.flush()


#: ``atoms.info`` keys with this prefix are hetens' own annotations and do not travel.
_INFO_PREFIX = keys.PREFIX
_STRUCTURE_ARRAYS = ("numbers", "positions")


def atoms_payload(atoms: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The fields and arrays that describe ``atoms`` exactly, for a ``calculate`` message.

    Sent: atomic numbers, positions (N, 3) Å, cell (3, 3) Å and pbc as raw
    arrays; every other numeric per-atom array (``initial_magmoms``, ``tags``,
    ``momenta``...); and the ``atoms.info`` entries that are JSON-serialisable
    (``charge``, ``spin``...; numpy values become numbers and lists), except
    hetens' own ``hetens_*`` keys. Other info entries are left out.
    """
    arrays = {
        "numbers": atoms.arrays["numbers"],
        "positions": atoms.arrays["positions"],
        "cell": np.asarray(atoms.cell.array, dtype=np.float64),
        "pbc": np.asarray(atoms.pbc, dtype=bool),
    }
    for name, value in atoms.arrays.items():
        if name not in _STRUCTURE_ARRAYS and value.dtype.kind in "biufc":
            arrays[f"array:{name}"] = value
    return {"info": payload_info(atoms.info)}, arrays


def payload_info(info: Mapping[str, Any]) -> dict[str, Any]:
    """The ``atoms.info`` entries that travel: JSON-serialisable ones, not ``hetens_*``."""
    kept = {}
    for key, value in info.items():
        if str(key).startswith(_INFO_PREFIX):
            continue
        try:
            json.dumps(value, default=jsonable)
        except (TypeError, ValueError):
            continue
        kept[str(key)] = value
    return kept


def atoms_from_payload(fields: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    """The :class:`ase.Atoms` that :func:`atoms_payload` described (needs ase)."""
    from ase import Atoms

    atoms = Atoms(numbers=arrays["numbers"], positions=arrays["positions"], cell=arrays["cell"],
                  pbc=arrays["pbc"])
    for name, value in arrays.items():
        if name.startswith("array:"):
            atoms.set_array(name[len("array:"):], np.array(value))
    atoms.info.update(fields.get("info", {}))
    return atoms
