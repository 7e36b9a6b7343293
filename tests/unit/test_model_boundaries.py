"""twin/model is pure numpy: importing it loads neither Ray nor gRPC. (Which modules it may
import, function-local imports included, is tests/unit/test_layers.py's import graph.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "twin" / "model"


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
