"""External device ids: EUI-64 strings derived from the dense internal hub index.

The map is a bijection on 40 bits (multiply by an odd constant, add a seed-derived offset), so
ids look scattered, are stable for a seed, and map back without a table."""

from __future__ import annotations

import re

from twin.model.catalog import DeviceType

_BITS = 40
_MASK = (1 << _BITS) - 1
_MUL = 0x9E3779B97F & _MASK | 1  # odd, so invertible mod 2^40
_INV = pow(_MUL, -1, 1 << _BITS)
# A 24-bit prefix per device type (a made-up OUI-style block for the twin).
_PREFIX = {DeviceType.CH: 0x00DB12, DeviceType.ESME: 0x00DB13, DeviceType.GSME: 0x00DB14, DeviceType.PPMID: 0x00DB15}
_TYPE_BY_PREFIX = {v: k for k, v in _PREFIX.items()}
_EUI_RE = re.compile(r"^[0-9A-F]{2}(-[0-9A-F]{2}){7}$")


def _offset(seed: int) -> int:
    return (seed * 0x5851F42D4C957F2D >> 7) & _MASK


def eui64(hub: int, seed: int, device: DeviceType = DeviceType.CH) -> str:
    """Device id of a hub's device, formatted like `00-DB-12-4F-0A-91-3C-07`."""
    v = (_PREFIX[device] << _BITS) | (((hub * _MUL) + _offset(seed)) & _MASK)
    raw = f"{v:016X}"
    return "-".join(raw[i : i + 2] for i in range(0, 16, 2))


def parse_eui64(device_id: str, seed: int) -> tuple[int, DeviceType]:
    """Hub index and device type of a device id; ValueError if it is not one of ours."""
    s = device_id.strip().upper().replace(":", "-")
    if len(s) == 16 and "-" not in s:
        s = "-".join(s[i : i + 2] for i in range(0, 16, 2))
    if not _EUI_RE.match(s):
        raise ValueError(f"{device_id!r} is not an EUI-64 device id like 00-DB-12-4F-0A-91-3C-07")
    v = int(s.replace("-", ""), 16)
    prefix = v >> _BITS
    if prefix not in _TYPE_BY_PREFIX:
        raise ValueError(f"{device_id!r} is not a device of this fleet")
    hub = (((v & _MASK) - _offset(seed)) * _INV) & _MASK
    return hub, _TYPE_BY_PREFIX[prefix]
