"""Sphinx configuration: ``python -m sphinx -W -b html docs docs/_build/html``."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import dynamicblocks  # noqa: E402

project = "dynamicblocks"
author = "dynamicblocks developers"
copyright = "2026, dynamicblocks developers"
release = dynamicblocks.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "gallery",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"dynamicblocks {release}"

_VIEWCODE_BACKLINK = re.compile(r'(class="viewcode-back" href="[^"#]*#)([^"]+)"')


def _fix_viewcode_backlinks(app, pagename, templatename, context, doctree) -> None:
    """Point the ``[docs]`` links of the highlighted sources at anchors that exist.

    ``sphinx.ext.viewcode`` prefixes every ``[docs]`` link of a module's source
    page with the module under which the first of its objects was documented.
    The API page documents ``ImplicitBlock`` as ``dynamicblocks.ImplicitBlock``
    but the exceptions next to it as ``dynamicblocks.implicit.ConvergenceError``,
    so their links would point at ``dynamicblocks.ConvergenceError``, which does
    not exist. A link to an undocumented name is pointed at the same object
    under the page's own module, if that is documented.
    """
    if not pagename.startswith("_modules/") or "body" not in context:
        return
    module = pagename.removeprefix("_modules/").replace("/", ".")
    objects = app.env.get_domain("py").objects

    def fix(match: re.Match) -> str:
        target = match.group(2)
        if target not in objects:
            parts = target.split(".")
            for k in range(1, len(parts)):
                candidate = ".".join([module, *parts[k:]])
                if candidate in objects:
                    return f'{match.group(1)}{candidate}"'
        return match.group(0)

    context["body"] = _VIEWCODE_BACKLINK.sub(fix, context["body"])


def setup(app) -> dict:
    app.connect("html-page-context", _fix_viewcode_backlinks)
    return {"parallel_read_safe": True}
