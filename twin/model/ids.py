"""External device ids: EUI-64 strings derived from the dense internal hub index.

The map is a bijection on 40 bits (multiply by an odd constant, add a seed-derived offset), so
ids look scattered, are stable for a seed, and map back without a table."""

from __future__ import annotations

import re

from twin.model.catalog import DeviceType
from twin.util.grammar import BLANKS, GrammarError, shown

_BITS = 40
_MASK = (1 << _BITS) - 1
_MUL = 0x9E3779B97F & _MASK | 1  # odd, so invertible mod 2^40
_INV = pow(_MUL, -1, 1 << _BITS)
# A 24-bit prefix per device type (a made-up OUI-style block for the twin).
_PREFIX = {DeviceType.CH: 0x00DB12, DeviceType.ESME: 0x00DB13, DeviceType.GSME: 0x00DB14, DeviceType.PPMID: 0x00DB15}
_TYPE_BY_PREFIX = {v: k for k, v in _PREFIX.items()}
# An EUI-64 as people write it: 8 hex octets, upper or lower case, joined all by '-', all by ':'
# or not at all (the backreference keeps one separator). ASCII only: [0-9A-Fa-f] is spelt out.
_EUI_RE = re.compile(r"[0-9A-Fa-f]{2}([-:]?)[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){6}", re.ASCII)
# A hub's dense index, as the API and CLI also accept it ('hubs/42'): ASCII digits, at most 12.
_INDEX_RE = re.compile(r"[0-9]{1,12}", re.ASCII)
HUB_PREFIX = "hubs/"


def _offset(seed: int) -> int:
    return (seed * 0x5851F42D4C957F2D >> 7) & _MASK


def eui64(hub: int, seed: int, device: DeviceType = DeviceType.CH) -> str:
    """Device id of a hub's device, formatted like `00-DB-12-4F-0A-91-3C-07`."""
    v = (_PREFIX[device] << _BITS) | (((hub * _MUL) + _offset(seed)) & _MASK)
    return v.to_bytes(8, "big").hex("-").upper()


def canonical_eui64(device_id: str) -> str:
    """The canonical spelling of an EUI-64 (upper-case hex, octets joined by '-'), from any of the
    accepted spellings ('00-db-12-...', '00:DB:12:...', '00DB12...'); GrammarError otherwise."""
    raw = _eui_hex(device_id)
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def _eui_hex(device_id: str) -> str:
    """The 16 upper-case hex digits of an EUI-64 in any accepted spelling; GrammarError otherwise."""
    if not isinstance(device_id, str):
        raise GrammarError(f"{shown(device_id)} is not an EUI-64 device id")
    s = device_id.strip(BLANKS)
    if not _EUI_RE.fullmatch(s):
        raise GrammarError(f"{shown(device_id)} is not an EUI-64 device id like 00-DB-12-4F-0A-91-3C-07 "
                           "(8 pairs of hex digits)")
    return s.replace("-", "").replace(":", "").upper()


def parse_eui64(device_id: str, seed: int) -> tuple[int, DeviceType]:
    """Hub index and device type of a device id; GrammarError (a ValueError) if it is not one of ours."""
    v = int(_eui_hex(device_id), 16)  # (the canonical spelling's digits, without joining them)
    prefix = v >> _BITS
    if prefix not in _TYPE_BY_PREFIX:
        raise GrammarError(f"{shown(device_id)} is not a device of this fleet")
    hub = (((v & _MASK) - _offset(seed)) * _INV) & _MASK
    return hub, _TYPE_BY_PREFIX[prefix]


def parse_hub_ref(text: str, seed: int) -> int:
    """The hub a reference names: `hubs/{device id}` or a bare device id (the hub's or any device
    behind it, in any spelling `canonical_eui64` accepts), or `hubs/{index}` / `{index}` with the
    hub's dense index in ASCII digits. Surrounding spaces and tabs are ignored; nothing else is:
    non-ASCII digits, signs, underscores, inner blanks and control characters are refused with a
    GrammarError. The index may be past the fleet's end: callers check the range (not found)."""
    if not isinstance(text, str):
        raise GrammarError(f"{shown(text)} is not a hub name")
    s = text.strip(BLANKS)
    body = s[len(HUB_PREFIX):] if s.startswith(HUB_PREFIX) else s
    if not body:
        raise GrammarError("name a hub: hubs/{device id}, e.g. hubs/00-DB-12-4F-0A-91-3C-07")
    if _INDEX_RE.fullmatch(body):
        return int(body)
    if not _EUI_RE.fullmatch(body):
        raise GrammarError(f"{shown(text)} is not a hub name: hubs/{{device id}} with an EUI-64 like "
                           "00-DB-12-4F-0A-91-3C-07, or hubs/{index} in ASCII digits")
    hub, _ = parse_eui64(body, seed)
    return hub
