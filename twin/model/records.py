"""Versioned data for checkpoints: a header (format name, format version, named typed arrays) and
the arrays' bytes, like the numpy `.npy` format or Arrow IPC, with no pickled Python objects.

Two layers:
- `pack` / `unpack`: a JSON header plus raw, C-ordered array buffers. A reader checks the
  format name and version and refuses anything else with `RecordFormatError`.
- `encode` / `decode`: an object graph of the operation runtime (planner, shard operations,
  commands, controls) as JSON-able values beside named arrays. Only the classes and enums named
  in a `RecordTypes` table may appear, each by a stable tag, never by module path; what a class
  keeps is its record (`to_record()`, its instance fields by default), so a record never holds a
  function, a lock or a class's pickled internals.

When a record's meaning changes (a field renamed, dropped or reinterpreted), bump the format's
version: an old file is then refused with a clear error instead of being patched by a shim.
Pure bytes and numpy: no I/O here (the engine writes the buffers atomically)."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

MAGIC = b"TWINREC\n"


class RecordFormatError(ValueError):
    """A buffer that is not a record of the expected format and version (or is damaged)."""


# -- the container ------------------------------------------------------------------------


def pack(fmt: str, version: int, meta: Mapping[str, Any],
         arrays: Iterable[tuple[str, np.ndarray]]) -> list[bytes | memoryview]:
    """Chunks of one record: MAGIC, the header's length (8 bytes, little-endian), the header
    (UTF-8 JSON: format, version, `meta`, and [name, dtype, shape] per array), then each array's
    own memory, uncopied when it is already contiguous. Writing the chunks in turn never builds the
    whole record as one more buffer (a shard of millions of hubs)."""
    named = [(name, np.ascontiguousarray(a)) for name, a in arrays]
    for name, a in named:
        if a.dtype.hasobject:
            raise TypeError(f"array {name!r} holds Python objects; a record holds numbers only")
    header = json.dumps({"format": fmt, "version": version, "meta": dict(meta),
                         "arrays": [[name, a.dtype.str, list(a.shape)] for name, a in named]},
                        allow_nan=False).encode()
    return [MAGIC, len(header).to_bytes(8, "little"), header,
            *(a.data.cast("B") if a.size else b"" for _, a in named)]


def pack_bytes(fmt: str, version: int, meta: Mapping[str, Any], arrays: Iterable[tuple[str, np.ndarray]]) -> bytes:
    return b"".join(pack(fmt, version, meta, arrays))


def peek(data: bytes | memoryview) -> tuple[dict[str, Any], int]:
    """The header of a record and where its array bytes start; RecordFormatError if it is none."""
    mv = memoryview(data)
    if bytes(mv[: len(MAGIC)]) != MAGIC:
        raise RecordFormatError("not a twin record (no TWINREC header): written by an older twin, or not a checkpoint")
    at = len(MAGIC)
    n = int.from_bytes(mv[at : at + 8], "little")
    try:
        header = json.loads(bytes(mv[at + 8 : at + 8 + n]))
    except ValueError as e:
        raise RecordFormatError(f"damaged record header: {e}") from None
    return header, at + 8 + n


def unpack(data: bytes | memoryview, fmt: str, versions: Iterable[int]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(meta, arrays by name) of a record of format `fmt` in one of `versions`. The arrays are
    read-only views of `data` (copy what will change). Raises RecordFormatError for another
    format, an unknown version (say, written by a newer twin) or a truncated buffer."""
    header, at = peek(data)
    known = tuple(versions)
    if header.get("format") != fmt:
        raise RecordFormatError(f"expected a {fmt!r} record, found {header.get('format')!r}")
    if header.get("version") not in known:
        raise RecordFormatError(f"{fmt!r} record of version {header.get('version')!r}; this twin reads version "
                                f"{' or '.join(map(str, known))} only (written by another release? start the run again)")
    mv = memoryview(data)
    arrays: dict[str, np.ndarray] = {}
    for name, dt, shape in header["arrays"]:
        dtype = np.dtype(dt)
        if dtype.hasobject:
            raise RecordFormatError(f"array {name!r} declares Python objects")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if at + size > len(mv):
            raise RecordFormatError(f"record truncated in array {name!r}")
        arrays[name] = np.frombuffer(mv[at : at + size], dtype=dtype).reshape(shape)
        at += size
    if at != len(mv):
        raise RecordFormatError(f"{len(mv) - at} bytes after the last array")
    return header["meta"], arrays


# -- the object graph ---------------------------------------------------------------------


class RecordTypes:
    """The classes and enums a record may hold, each under a stable tag (its class name unless
    given). A class is rebuilt by `from_record(fields, context)` if it has one, a dataclass by its
    constructor, any other class by setting its recorded fields on a bare instance (its
    `to_record()`, or its instance fields, minus the names in its `_record_context`: shared
    objects such as the run's FleetConfig, supplied again from the decoder's context)."""

    def __init__(self, classes: Iterable[type] = (), enums: Iterable[type[enum.Enum]] = ()) -> None:
        self.classes: dict[str, type] = {}
        self.enums: dict[str, type[enum.Enum]] = {}
        self._tags: dict[type, str] = {}  # the reverse of both, for the encoder
        for cls in classes:
            self.add(cls)
        for e in enums:
            self.add_enum(e)

    def add(self, cls: type, tag: str | None = None) -> None:
        tag = tag or cls.__name__
        if self.classes.get(tag, cls) is not cls:
            raise ValueError(f"two record classes tagged {tag!r}")
        self.classes[tag] = cls
        self._tags[cls] = tag

    def add_enum(self, e: type[enum.Enum], tag: str | None = None) -> None:
        tag = tag or e.__name__
        if self.enums.get(tag, e) is not e:
            raise ValueError(f"two record enums tagged {tag!r}")
        self.enums[tag] = e
        self._tags[e] = tag

    def tag_of(self, cls: type) -> str:
        tag = self._tags.get(cls)
        if tag is None or self.classes.get(tag) is not cls:
            raise TypeError(f"{cls.__module__}.{cls.__qualname__} is not a record type; add it to the RecordTypes table")
        return tag

    def enum_tag_of(self, e: type[enum.Enum]) -> str:
        tag = self._tags.get(e)
        if tag is None or self.enums.get(tag) is not e:
            raise TypeError(f"enum {e.__qualname__} is not a record type; add it to the RecordTypes table")
        return tag


class Encoder:
    """Turns values into JSON-able ones, collecting numpy arrays under generated names."""

    def __init__(self, types: RecordTypes) -> None:
        self.types = types
        self.arrays: dict[str, np.ndarray] = {}
        # Objects already written, by id: a second reference is written as {"$ref": n}, so an
        # object held in two places (a planner's `ops` and `live`) is one object again when read.
        self.seen: dict[int, int] = {}
        self.keep: list[Any] = []  # holds them, so no id is reused while encoding

    def array(self, a: np.ndarray) -> dict[str, Any]:
        name = f"a{len(self.arrays)}"
        self.arrays[name] = a
        return {"$a": name}

    def __call__(self, v: Any) -> Any:
        if isinstance(v, np.generic):  # before int and float: np.float64 is a float, and stays np.float64
            return {"$n": v.dtype.str, "v": self(v.item())}
        if v is None or isinstance(v, bool | str):
            return v
        if isinstance(v, enum.Enum):
            return {"$e": self.types.enum_tag_of(type(v)), "v": v.value}
        if isinstance(v, int):
            return int(v)
        if isinstance(v, float):
            return v if math.isfinite(v) else {"$f": repr(v)}
        if isinstance(v, np.ndarray):
            out = self.array(v)
            if not v.flags.writeable:
                out["ro"] = True
            return out
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, tuple):
            return {"$t": [self(x) for x in v]}
        if isinstance(v, deque):
            return {"$q": [self(x) for x in v]}
        if isinstance(v, set | frozenset):
            items = sorted((self(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
            return {"$s" if isinstance(v, set) else "$fs": items}
        if isinstance(v, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in v):
                return {k: self(x) for k, x in v.items()}
            return {"$d": [[self(k), self(x)] for k, x in v.items()]}
        tag = self.types.tag_of(type(v))
        if id(v) in self.seen:
            return {"$ref": self.seen[id(v)]}
        ref = self.seen[id(v)] = len(self.seen)
        self.keep.append(v)
        if dataclasses.is_dataclass(v):
            fields = {f.name: getattr(v, f.name) for f in dataclasses.fields(v)}
        else:
            to_record = getattr(v, "to_record", None)
            fields = to_record() if to_record else dict(vars(v))
            for name in getattr(v, "_record_context", ()):
                fields.pop(name, None)
        return {"$o": tag, "id": ref, "f": {k: self(x) for k, x in fields.items()}}


class Decoder:
    """The inverse of Encoder, given the arrays and the context objects (e.g. {"config": ...})."""

    def __init__(self, types: RecordTypes, arrays: Mapping[str, np.ndarray], context: Mapping[str, Any]) -> None:
        self.types = types
        self.arrays = arrays
        self.context = context
        self.objects: dict[int, Any] = {}

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "$a" in v:
            a = self.arrays[v["$a"]].copy()
            if v.get("ro"):
                a.setflags(write=False)
            return a
        if "$e" in v:
            return self._enum(v["$e"])(v["v"])
        if "$f" in v:
            return float(v["$f"])
        if "$n" in v:
            return np.dtype(v["$n"]).type(self(v["v"]))
        if "$t" in v:
            return tuple(self(x) for x in v["$t"])
        if "$q" in v:
            return deque(self(x) for x in v["$q"])
        if "$s" in v:
            return {self(x) for x in v["$s"]}
        if "$fs" in v:
            return frozenset(self(x) for x in v["$fs"])
        if "$d" in v:
            return {_hashable(self(k)): self(x) for k, x in v["$d"]}
        if "$ref" in v:
            if v["$ref"] not in self.objects:
                raise RecordFormatError(f"reference to object {v['$ref']} before it is defined")
            return self.objects[v["$ref"]]
        if "$o" in v:
            return self._object(v)
        return {k: self(x) for k, x in v.items()}

    def _object(self, v: dict[str, Any]) -> Any:
        cls = self.types.classes.get(v["$o"])
        if cls is None:
            raise RecordFormatError(f"unknown record type {v['$o']!r}")
        from_record: Callable[..., Any] | None = getattr(cls, "from_record", None)
        if from_record is not None or dataclasses.is_dataclass(cls):
            fields = {k: self(x) for k, x in v["f"].items()}
            obj = from_record(fields, self.context) if from_record is not None else cls(**fields)
            self.objects[v["id"]] = obj
            return obj
        # A plain object is known before its fields are read, so a field may refer back to it.
        bare: Any = object.__new__(cls)
        self.objects[v["id"]] = bare
        bare.__dict__.update({k: self(x) for k, x in v["f"].items()})
        for name in getattr(cls, "_record_context", ()):
            setattr(bare, name, self.context[name])
        return bare

    def _enum(self, tag: str) -> type[enum.Enum]:
        e = self.types.enums.get(tag)
        if e is None:
            raise RecordFormatError(f"unknown enum {tag!r}")
        return e


def _hashable(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def encode(value: Any, types: RecordTypes) -> tuple[Any, dict[str, np.ndarray]]:
    """(JSON-able value, arrays by name) of `value`; TypeError for a value of no record type."""
    enc = Encoder(types)
    return enc(value), enc.arrays


def decode(value: Any, arrays: Mapping[str, np.ndarray], types: RecordTypes, context: Mapping[str, Any]) -> Any:
    """The value `encode` recorded; RecordFormatError for a tag the table does not know."""
    return Decoder(types, arrays, context)(value)
