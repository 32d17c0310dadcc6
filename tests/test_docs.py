"""The code snippets of the documentation run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [
    "README.md",
    "docs/getting_started.md",
    "docs/guide.md",
    "docs/continuous.md",
    "docs/implicit.md",
    "docs/memory.md",
    "docs/multistep.md",
    "docs/adaptive.md",
    "docs/neural_odes.md",
]


@pytest.mark.parametrize("page", PAGES)
def test_python_snippets_run_in_order(page, tmp_path, monkeypatch):
    snippets = re.findall(r"```python\n(.*?)```", (ROOT / page).read_text(), re.S)
    assert snippets, f"{page} has no python snippet"
    monkeypatch.chdir(tmp_path)  # snippets may write files
    namespace: dict = {}
    for snippet in snippets:
        exec(compile(snippet, page, "exec"), namespace)
