"""The package imports with only its declared dependencies (torch and numpy)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_imports_without_the_optional_packages():
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys

        class Refuse:  # as if only torch and numpy were installed
            optional = {"matplotlib", "tqdm", "scipy", "yaml", "torchdiffeq", "torchvision"}

            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in self.optional:
                    raise ModuleNotFoundError(f"No module named {name!r}")
                return None

        sys.meta_path.insert(0, Refuse())
        import dynamicblocks

        names = [m.name for m in pkgutil.walk_packages(dynamicblocks.__path__, "dynamicblocks.")]
        for name in names:
            importlib.import_module(name)
        try:
            dynamicblocks.plot_stability_regions("rk4")
        except ImportError as error:
            assert "pip install matplotlib" in str(error), error
        else:
            raise AssertionError("plotting without matplotlib did not fail")
        print(len(names), "modules")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[1] == "modules" and int(result.stdout.split()[0]) > 20
