"""Checks on a parsed command that need the fleet's state: conflicts, empty selections,
operations that do not exist. A failed check raises TwinInputError and changes nothing."""

from __future__ import annotations

from collections.abc import Callable

from twin.model.catalog import SUPPLIERS, DeviceModel, DeviceType, models_of
from twin.model.config import TwinInputError
from twin.model.ops.commands import Command, FirmwareRollout, OperationControl, SupplierFailure, SupplierSwitch
from twin.model.ops.runtime import FleetPlanner


class UnknownOperation(TwinInputError):
    """A control names an operation the run does not hold (the API answers NOT_FOUND)."""


class OperationStateConflict(TwinInputError):
    """A control the operation's state does not allow, e.g. pausing a finished rollout (the API
    answers FAILED_PRECONDITION)."""


class CommandConflict(TwinInputError):
    """A command that conflicts with one still running, e.g. a second rollout of the same devices
    (the API answers FAILED_PRECONDITION)."""


def _overlap(a: tuple, b: tuple) -> bool:
    """Empty means 'all'."""
    return not a or not b or bool(set(a) & set(b))


def _model(cmd: FirmwareRollout) -> DeviceModel:
    return models_of(DeviceType(cmd.device_type))[cmd.model_code - 1]


def _keys(cmd: FirmwareRollout) -> tuple:
    """from_versions as versions (1.16 and 1.16.0 overlap), not as text."""
    return tuple(_model(cmd).scheme.sort_key(v) for v in cmd.from_versions)


def rollout_version_check(cmd: FirmwareRollout, held: dict[str, int]) -> None:
    """Refuse a rollout that would downgrade a device it selects, or that has nothing to do.

    `held` is {version: devices} over the devices the selector matches now (census). The rule,
    with versions ordered by the model's scheme (catalog.VersionScheme):
    - a device already on the target (the same version under the scheme) is left alone: no-op;
    - a downgrade is a target below the version of any other selected device; it is refused,
      naming target_version, unless allow_downgrade (to upgrade only the older devices, name
      them in from_versions);
    - a selection with no device, or with every device on the target, is refused."""
    m = _model(cmd)
    key = m.scheme.sort_key
    target = key(cmd.target_version)
    on_target = sum(n for v, n in held.items() if key(v) == target)
    others = {v: n for v, n in held.items() if n and key(v) != target}
    if not others:
        if on_target:
            raise TwinInputError("target_version", f"every selected {m.label} device ({on_target:,}) already runs "
                                                   f"{cmd.target_version}: nothing to do")
        raise TwinInputError("selector", f"no {m.label} devices match this selection")
    newer = sorted((v for v in others if key(v) > target), key=key)
    if newer and not cmd.allow_downgrade:
        older = sorted((v for v in others if key(v) < target), key=key)
        hint = f"set from_versions to {', '.join(older)} to upgrade only those, or " if older else "set "
        raise TwinInputError(
            "target_version",
            f"{cmd.target_version} is below {', '.join(newer)}, which {sum(others[v] for v in newer):,} selected "
            f"{m.label} device(s) run: a downgrade ({hint}allow_downgrade to downgrade on purpose)")


def validate(cmd: Command, planner: FleetPlanner, *, census: Callable[[Command], dict[str, int]]) -> None:
    if isinstance(cmd, OperationControl):
        op = planner.ops.get(cmd.operation)
        if op is None:
            raise UnknownOperation("operation", f"no operation named {cmd.operation!r}")
        if cmd.action not in op.allowed_actions():
            raise OperationStateConflict("action", f"cannot {cmd.action} {cmd.operation}: it is {op.state.lower()}")
        return
    # Only operations not yet done can conflict, and all of them are live: looking at the live ones
    # keeps a request (an SR 11.1 is a rollout) from costing every operation ever accepted.
    if isinstance(cmd, FirmwareRollout):
        for op in planner.live.values():
            other = op.cmd
            if (isinstance(other, FirmwareRollout) and not op.done and other.device_type == cmd.device_type
                    and other.model_code == cmd.model_code and _overlap(other.regions, cmd.regions)
                    and _overlap(other.suppliers, cmd.suppliers)
                    and _overlap(_keys(other), _keys(cmd)) and _overlap(other.hubs, cmd.hubs)):
                raise CommandConflict("model", f"conflicts with {op.name}, still {op.state.lower()} on "
                                              f"{cmd.model_label} devices of the same selection")
        for v in cmd.from_versions:
            if planner.versions.find(cmd.device_type, cmd.model_code, v) is None:
                known = planner.versions.versions(cmd.device_type, cmd.model_code)
                raise TwinInputError("from_versions", f"no {cmd.model_label} device runs {v}; versions of this "
                                                      f"run: {', '.join(sorted(known, key=_model(cmd).scheme.sort_key))}")
        rollout_version_check(cmd, census(cmd))
    # A supplier fails once and for good: no second failure, no customers sent to it as a Supplier
    # of Last Resort, no switch to it from its failure on (its customers are being moved away).
    failed = planner.failed_suppliers
    if isinstance(cmd, SupplierFailure):
        if cmd.supplier in failed:
            raise CommandConflict("supplier", f"{_name(cmd.supplier)} already failed in {failed[cmd.supplier][2]}")
        if cmd.solr in failed:
            raise CommandConflict("solr", f"{_name(cmd.solr)} failed in {failed[cmd.solr][2]}: a Supplier of Last "
                                         "Resort must be a supplier still trading")
    if isinstance(cmd, SupplierSwitch) and cmd.to_supplier in failed and cmd.at >= failed[cmd.to_supplier][0]:
        raise CommandConflict("to_supplier", f"{_name(cmd.to_supplier)} has failed ({failed[cmd.to_supplier][2]}) "
                                            "and takes no customers")


def _name(code: int) -> str:
    return SUPPLIERS[code - 1].name
