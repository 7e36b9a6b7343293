"""The public protos stand alone: `protos/` is the only include root a client in any language needs.

(a) grpcio-tools' protoc compiles every public .proto with `-I protos` alone, and the Python it
writes imports and holds the services; (b) Node's @grpc/proto-loader (the package dir in
TWIN_PROTO_LOADER, as .ci/run installs it) loads each public file with `includeDirs: [protos]` alone,
with no fallback to a path beside the file, and finds the services; (c) the internal replica
protocol is not among them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
# Every public proto: ours under protos/twin/, and the Google ones vendored beside them.
OURS = sorted(p.relative_to(PROTOS).as_posix() for p in (PROTOS / "twin").rglob("*.proto"))
PUBLIC = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
# The services a client of each of our files must find (Operations via fleet.proto's import).
SERVICES = {
    "twin/fleet/v1/fleet.proto": {"twin.fleet.v1.FleetService", "google.longrunning.Operations"},
    "twin/dcc/v1/dcc.proto": {"twin.dcc.v1.DccService"},
    "twin/csp/v1/csp.proto": {"twin.csp.v1.CspService"},
}

LOADER = os.environ.get("TWIN_PROTO_LOADER")
NODE = shutil.which("node")
needs_loader = pytest.mark.skipif(
    not LOADER or NODE is None,
    reason="set TWIN_PROTO_LOADER to the @grpc/proto-loader package dir (and have node), as .ci/run does")


def test_our_public_protos_are_the_ones_with_services() -> None:
    # A new public proto must join SERVICES (and so the loaders' checks below).
    assert sorted(SERVICES) == OURS


def test_protoc_compiles_every_public_proto_with_protos_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # `python -m grpc_tools.protoc` is the command a Python user runs; like every protoc it brings
    # the google/protobuf well-known types itself, so `-I protos` is the only root given.
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}",
                           f"--grpc_python_out={out}", *PUBLIC],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    # Regular packages, so `twin` here wins over the installed twin in the child below.
    for d in {p.parent for p in (out / "twin").rglob("*_pb2.py")} | {out / "twin"}:
        while d != out:
            (d / "__init__.py").touch()
            d = d.parent
    # Import the fresh code (not twin.generated, not googleapis-common-protos's) in a clean child.
    script = f"""
import importlib, json, sys
sys.path.insert(0, {str(out)!r})
found = {{}}
for name in {[f[: -len(".proto")].replace("/", ".") for f in PUBLIC]!r}:
    pb2 = importlib.import_module(name + "_pb2")
    grpc_mod = importlib.import_module(name + "_pb2_grpc")
    assert pb2.__file__.startswith({str(out)!r}) and grpc_mod.__file__.startswith({str(out)!r}), pb2.__file__
    found[name] = sorted(s.full_name for s in pb2.DESCRIPTOR.services_by_name.values())
print(json.dumps(found))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ran = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120, check=False)
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["twin.fleet.v1.fleet"] == ["twin.fleet.v1.FleetService"]
    assert found["twin.dcc.v1.dcc"] == ["twin.dcc.v1.DccService"]
    assert found["twin.csp.v1.csp"] == ["twin.csp.v1.CspService"]
    assert found["google.longrunning.operations"] == ["google.longrunning.Operations"]


# Loads each file given with includeDirs [protos] only. proto-loader falls back to a path beside
# the importing file (with a warning) when an import is not under the include dirs; any warning is
# reported, so such a fallback fails the test instead of passing unseen.
LOAD_SCRIPT = """
const loader = require(process.env.TWIN_PROTO_LOADER);
const [protos, ...files] = process.argv.slice(1);
const warnings = [];
process.on('warning', (w) => warnings.push(String(w.message)));
const found = {};
for (const f of files) {
  const def = loader.loadSync(f, {includeDirs: [protos]});
  // A service's definition maps method names to {path, requestStream, ...}; a message's has `format`.
  found[f] = Object.keys(def).filter((k) => !('format' in def[k])
    && Object.values(def[k]).every((m) => m && typeof m.path === 'string')).sort();
}
setImmediate(() => process.stdout.write(JSON.stringify({found, warnings})));
"""


@needs_loader
def test_node_proto_loader_loads_every_public_proto_with_protos_alone(tmp_path: Path) -> None:
    assert NODE is not None and LOADER is not None
    # Run from an empty folder, so nothing resolves against the working directory either.
    done = subprocess.run([NODE, "-e", LOAD_SCRIPT, str(PROTOS), *PUBLIC], cwd=tmp_path,
                          env={**os.environ, "TWIN_PROTO_LOADER": LOADER},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["warnings"] == []
    for f, services in SERVICES.items():
        assert set(result["found"][f]) == services, f
    assert result["found"]["google/longrunning/operations.proto"] == ["google.longrunning.Operations"]


def test_no_internal_replica_proto_among_the_public_ones() -> None:
    replica = [f for f in PUBLIC if "replica" in f or "package twin.replica" in (PROTOS / f).read_text()]
    assert replica == []
