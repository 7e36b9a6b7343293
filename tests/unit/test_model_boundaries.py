"""twin/model is pure numpy: it imports neither Ray nor gRPC (nor anything that does)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "twin" / "model"
FORBIDDEN = ("ray", "grpc", "google.protobuf", "twin.engine", "twin.services", "dashboard")


def test_model_sources_import_nothing_forbidden():
    offenders = []
    for path in MODEL.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for n in names:
                if any(n == f or n.startswith(f + ".") for f in FORBIDDEN):
                    offenders.append(f"{path.name}: {n}")
    assert not offenders, offenders
    assert len(list(MODEL.rglob("*.py"))) >= 10  # the scan really saw the package


def test_importing_the_whole_model_loads_no_ray_or_grpc():
    modules = sorted(p.stem for p in MODEL.glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import twin.model.{m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('ray', 'grpc')]\n"
        + "print(len(sys.modules)); assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
