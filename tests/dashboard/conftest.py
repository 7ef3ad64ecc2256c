"""The dashboard tests reuse the integration tests' fixtures (fake Prefect, floodgated) and add
a real Prometheus (Debian's package) on a free loopback port."""
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               REPO / "tests" / "integration" / "conftest.py")
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
