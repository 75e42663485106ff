"""Load a script from tools/ or benchmarks/ as a module, for the tests of those scripts (neither is a package)."""

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def load_tool(name: str, folder: Path = TOOLS) -> ModuleType:
    """tools/<name>.py (or `folder`/<name>.py), imported under `name`."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
