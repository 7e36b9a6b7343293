"""The services see the engine through its protocols (twin.engine.interface) only, and the type
checker proves the supervisor and an API replica's view implement them."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.engine.clock import ClockState
from twin.engine.operations import OperationField, OperationFilter, OperationTerm
from twin.model.ops.commands import FirmwareRollout

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted((ROOT / "twin" / "services").rglob("*.py"))
ENGINE_NAMES = {"supervisor", "sup", "engine"}
# DccEngine: the members of FleetEngine the DCC logic uses (twin/services/dcc/core.py; mypy checks
# FleetEngine has them all).
PROTOCOLS = {"FleetEngine", "HubReads", "ShardAccess", "DccEngine"}


def _engine_parameters(path: Path) -> list[tuple[str, int, str | None]]:
    """(function, line, annotation) of every parameter of `path` named like the engine."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
                if arg.arg in ENGINE_NAMES:
                    out.append((node.name, node.lineno,
                                ast.unparse(arg.annotation) if arg.annotation is not None else None))
    return out


def test_every_service_takes_the_engine_as_one_of_its_protocols():
    found = {(p.name, fn, line): ann for p in SERVICES for fn, line, ann in _engine_parameters(p)}
    # The servicers, the batcher, branches, the replica source and the server all take one.
    assert len(found) >= 9, found
    wrong = {k: ann for k, ann in found.items() if ann not in PROTOCOLS}
    assert wrong == {}, f"engine parameters not typed with {sorted(PROTOCOLS)}: {wrong}"


def test_no_service_imports_the_supervisor_class_or_reaches_into_the_planner():
    for path in SERVICES:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = {a.name for a in node.names}
                assert "FleetSupervisor" not in names, f"{path.name}:{node.lineno} imports FleetSupervisor"
            if isinstance(node, ast.Attribute) and node.attr in ("planner", "_plan_lock", "pipeline", "ops"):
                owner = ast.unparse(node.value)
                assert owner not in ("self.sup", "sup", "self.supervisor", "supervisor"), (
                    f"{path.name}:{node.lineno} reads {owner}.{node.attr}: the engine's internals")


def test_the_clock_states_keep_the_words_the_api_uses():
    assert [s.value for s in ClockState] == ["paused", "running", "stopped", "failed"]
    assert ClockState.RUNNING == "running" and f"{ClockState.FAILED}" == "failed"


# -- the type checker's proof ----------------------------------------------------------------------
# Third-party packages the checked modules import but whose types no protocol or implementing class
# names (the engine's runtime, the web stack, terminal output, crypto): mypy takes them as Any
# instead of reading their ~1,800 modules (ray alone is ~800), which was most of the check's time.
# test_no_skipped_package_types_the_protocols_or_their_implementations keeps that premise true.
SKIPPED = ("ray", "fastapi", "starlette", "uvicorn", "httpx", "httpcore", "pydantic", "rich", "cryptography",
           "signxml", "prometheus_client")
CHECKED = [ROOT / "twin" / "engine" / "interface.py", ROOT / "twin" / "engine" / "supervisor.py",
           ROOT / "twin" / "services" / "replica.py"]


def _mypy_config(tmp_path: Path) -> Path:
    """The project's mypy settings (pyproject's [tool.mypy]) with SKIPPED not followed."""
    import json
    import tomllib

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    overrides = [*cfg.pop("overrides", []),
                 {"module": [m for p in SKIPPED for m in (p, f"{p}.*")], "follow_imports": "skip"}]
    lines = ["[tool.mypy]", *(f"{k} = {json.dumps(v)}" for k, v in cfg.items())]
    for o in overrides:
        lines += ["[[tool.mypy.overrides]]", *(f"{k} = {json.dumps(v)}" for k, v in o.items())]
    path = tmp_path / "mypy.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _mypy(tmp_path: Path, body: str) -> tuple[int, str]:
    api = pytest.importorskip("mypy.api")
    probe = tmp_path / "probe.py"
    probe.write_text(textwrap.dedent(body), encoding="utf-8")
    out, err, status = api.run([str(probe), "--config-file", str(_mypy_config(tmp_path)), "--ignore-missing-imports",
                                "--follow-imports=silent", "--no-incremental", "--cache-dir", str(tmp_path / "cache"),
                                "--no-error-summary"])
    return status, out + err


def test_no_skipped_package_types_the_protocols_or_their_implementations():
    """No annotation in the protocols' module or the implementations' names a package the type
    checker's proof does not follow (so taking those packages as Any cannot hide a mismatch)."""
    for path in CHECKED:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names
                          if a.name.split(".")[0] in SKIPPED}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in SKIPPED:
                names |= {a.asname or a.name for a in node.names}
        annotations = []
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs, node.args.vararg,
                        node.args.kwarg]
                annotations += [a.annotation for a in args if a is not None and a.annotation is not None]
                annotations += [node.returns] if node.returns is not None else []
            elif isinstance(node, ast.AnnAssign):
                annotations.append(node.annotation)
        # As text, so names inside string annotations count too.
        text = " ".join(ast.unparse(a) + " " + (a.value if isinstance(a, ast.Constant) and isinstance(a.value, str)
                                                 else "") for a in annotations)
        assert not [n for n in names if re.search(rf"(?<![\w.]){re.escape(n)}\b", text)], (path.name, names)


def test_the_type_checker_proves_the_implementations_and_catches_a_missing_member(tmp_path):
    status, out = _mypy(tmp_path, """
        from twin.engine.interface import FleetEngine, HubReads, ShardAccess
        from twin.engine.supervisor import FleetSupervisor
        from twin.services.replica import FleetView

        engine: type[FleetEngine] = FleetSupervisor
        shards: type[ShardAccess] = FleetSupervisor
        view: type[HubReads] = FleetView


        class NoRead:  # a view that forgot read(): must be refused
            config = None
            tick = 0

            def shard_of(self, hub: int) -> int:
                return 0

            def hub(self, hub: int) -> dict:
                return {}


        wrong: type[HubReads] = NoRead
        not_an_engine: type[FleetEngine] = FleetView
        """)
    errors = [line for line in out.splitlines() if ": error:" in line]
    # The two wrong assignments, and nothing else: the supervisor and the view conform.
    assert len(errors) == 2, out
    assert '"type[NoRead]", variable has type "type[HubReads]"' in errors[0], out
    assert '"type[FleetView]", variable has type "type[FleetEngine]"' in errors[1], out
    assert status == 1


# -- the typed operation filter --------------------------------------------------------------------
KINDS = ["firmware_rollout", "service_request", "supplier_switch", "power_outage"]
STATES = ["PENDING", "RUNNING", "PAUSED", "DONE", "CANCELLED", "HALTED", "FAILED"]


def _op(kind: str, state: str, done: bool, cmd=None):
    return SimpleNamespace(cmd=cmd or SimpleNamespace(kind=kind), state=state, done=done)


def _value(field: OperationField, op) -> str:
    return {"done": str(op.done).lower(), "kind": op.cmd.kind, "state": op.state.lower()}[field.value]


ops_ = st.builds(_op, st.sampled_from(KINDS), st.sampled_from(STATES), st.booleans())
terms = st.builds(OperationTerm, st.sampled_from(list(OperationField)),
                  st.sampled_from(["true", "false", *KINDS, *(s.lower() for s in STATES)]), st.booleans())


@given(ops_, terms)
def test_a_term_and_its_negation_split_every_operation(op, term):
    neg = OperationTerm(term.field, term.value, negate=not term.negate)
    assert OperationFilter((term,)).matches(op) != OperationFilter((neg,)).matches(op)
    assert OperationFilter((term,)).matches(op) == ((_value(term.field, op) == term.value) != term.negate)


@given(ops_, st.lists(terms, max_size=4))
def test_terms_are_joined_by_and(op, ts):
    assert OperationFilter(tuple(ts)).matches(op) == all(OperationFilter((t,)).matches(op) for t in ts)


def test_the_held_image_filter_finds_only_a_one_hub_rollout_holding_activation():
    held = FirmwareRollout(at=0, device_type=1, model_code=1, target_version="2.0", hubs=(7,), hold_activation=True)
    where = OperationFilter((OperationTerm(OperationField.DONE, "false"),), held_image_for=7)
    assert where.matches(_op("firmware_rollout", "RUNNING", False, held))
    assert not where.matches(_op("firmware_rollout", "DONE", True, held))  # activated or ended
    assert not OperationFilter(held_image_for=8).matches(_op("firmware_rollout", "RUNNING", False, held))
    activates_now = FirmwareRollout(at=0, device_type=1, model_code=1, target_version="2.0", hubs=(7,), hold_activation=False)
    assert not where.matches(_op("firmware_rollout", "RUNNING", False, activates_now))
    two_hubs = FirmwareRollout(at=0, device_type=1, model_code=1, target_version="2.0", hubs=(7, 9), hold_activation=True)
    assert not where.matches(_op("firmware_rollout", "RUNNING", False, two_hubs))
    assert not where.matches(_op("service_request", "RUNNING", False))


def test_list_operations_filter_text_becomes_typed_terms():
    from twin.services.fleet_servicer import _operation_filter

    assert _operation_filter(" ") is None
    assert _operation_filter('done=false AND kind!="service_request"') == OperationFilter((
        OperationTerm(OperationField.DONE, "false"),
        OperationTerm(OperationField.KIND, "service_request", negate=True)))
    assert _operation_filter("state=RUNNING") == OperationFilter((OperationTerm(OperationField.STATE, "running"),))
