"""The citation files: CITATION.cff, and the JOSS paper (paper.md, paper.bib).

No network. The YAML and schema checks need PyYAML and ``jsonschema`` (both in
the ``test`` extra). The CFF 1.2.0 JSON schema is kept in
``tests/schemas/cff-1.2.0.json``, a copy of the one ``cffconvert`` ships
(https://citation-file-format.github.io/1.2.0/schema.json, CC-BY-4.0).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import dynamicblocks

ROOT = Path(__file__).resolve().parents[1]
CFF = ROOT / "CITATION.cff"
PAPER = ROOT / "paper.md"
BIB = ROOT / "paper.bib"

DOI = re.compile(r"^10\.\d{4,9}/\S+$")
ARXIV_ID = re.compile(r"^(\d{2})(\d{2})\.(\d{4,5})(v\d+)?$")  # YYMM.NNNNN (NNNN before 2015)


def _front_matter() -> str:
    text = PAPER.read_text(encoding="utf-8")
    match = re.match(r"---\n(.*?)\n---\n", text, re.S)
    assert match, "paper.md must start with a YAML front matter block between '---' lines"
    return match.group(1)


def _body() -> str:
    return PAPER.read_text(encoding="utf-8").split("\n---\n", 1)[1]


def _bib_entries() -> dict[str, dict[str, str]]:
    """Entries of paper.bib as {key: {field: value}}; fields are lower-cased."""
    text = BIB.read_text(encoding="utf-8")
    entries: dict[str, dict[str, str]] = {}
    starts = list(re.finditer(r"^@(\w+)\s*\{\s*([^,\s]+)\s*,", text, re.M))
    for start, end in zip(starts, [*starts[1:], None]):
        key = start.group(2)
        assert key not in entries, f"paper.bib: duplicate key {key!r}"
        chunk = text[start.end() : end.start() if end else len(text)]
        fields = re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?\s*$", chunk, re.M)
        entries[key] = {name.lower(): value.strip() for name, value in fields}
        entries[key]["_type"] = start.group(1).lower()
    return entries


def _cited_keys() -> set[str]:
    prose = re.sub(r"```.*?```", "", _body(), flags=re.S)  # code may contain '@'
    return set(re.findall(r"(?<![\w.@])@([A-Za-z][\w:-]*[\w])", prose))


# --- CITATION.cff --------------------------------------------------------------


def test_citation_cff_has_the_version_license_and_required_keys():
    text = CFF.read_text(encoding="utf-8")
    for key in ("cff-version", "message", "title", "authors", "version", "license"):
        assert re.search(rf"^{key}:", text, re.M), f"CITATION.cff has no top-level {key!r}"
    assert re.search(r"^cff-version: 1\.2\.0$", text, re.M)
    version = re.search(r"^version:\s*\"?([^\"\s]+)\"?\s*$", text, re.M).group(1)
    assert version == dynamicblocks.__version__
    setup_version = re.search(r'version="([^"]+)"', (ROOT / "setup.py").read_text())
    assert setup_version and setup_version.group(1) == version
    assert re.search(r"^license: MIT$", text, re.M)
    assert (ROOT / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_citation_cff_parses_and_matches_the_paper():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load(CFF.read_text(encoding="utf-8"))
    paper = yaml.safe_load(_front_matter())
    assert cff["version"] == dynamicblocks.__version__
    names = [author["name"] for author in paper["authors"]]
    assert [author["name"] for author in cff["authors"]] == names
    citation = cff["preferred-citation"]
    assert citation["type"] == "article"
    assert citation["journal"] == "Journal of Open Source Software"
    assert citation["title"] == paper["title"]
    assert [author["name"] for author in citation["authors"]] == names


def test_citation_cff_validates_against_the_cff_1_2_0_schema():
    yaml = pytest.importorskip("yaml")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parent / "schemas" / "cff-1.2.0.json").read_text())
    cff = yaml.safe_load(CFF.read_text(encoding="utf-8"))
    jsonschema.validate(cff, schema)


# --- paper.md ------------------------------------------------------------------


def test_paper_front_matter_has_the_joss_fields():
    front = _front_matter()
    for key in ("title", "tags", "authors", "affiliations", "date", "bibliography"):
        assert re.search(rf"^{key}:", front, re.M), f"paper.md front matter has no {key!r}"
    assert re.search(r"^date: \d{1,2} [A-Z][a-z]+ \d{4}$", front, re.M)
    assert re.search(r"^bibliography: paper\.bib$", front, re.M)
    assert re.search(r"^\s+- name: \S", front, re.M)  # at least one author or affiliation
    assert re.search(r"^\s+affiliation: ", front, re.M)


def test_paper_front_matter_authors_point_at_affiliations():
    yaml = pytest.importorskip("yaml")
    front = yaml.safe_load(_front_matter())
    assert front["title"] and front["tags"]
    indices = {str(affiliation["index"]) for affiliation in front["affiliations"]}
    for author in front["authors"]:
        assert author["name"]
        for index in str(author["affiliation"]).split(","):
            assert index.strip() in indices, f"{author['name']}: no affiliation {index!r}"


def test_paper_has_the_joss_sections():
    headings = re.findall(r"^# (.+)$", re.sub(r"```.*?```", "", _body(), flags=re.S), re.M)
    for section in ("Summary", "Statement of need", "Acknowledgements", "References"):
        assert section in headings, f"paper.md has no '# {section}' section"
    assert headings[-1] == "References"


# --- paper.bib -----------------------------------------------------------------


def test_every_citation_in_the_paper_is_in_the_bib_and_every_entry_is_cited():
    cited = _cited_keys()
    entries = _bib_entries()
    assert cited, "paper.md cites nothing"
    missing, unused = sorted(cited - entries.keys()), sorted(entries.keys() - cited)
    assert not missing, f"cited but not in paper.bib: {missing}"
    assert not unused, f"in paper.bib but never cited: {unused}"


def test_every_bib_entry_has_a_doi_or_an_arxiv_id_or_a_url():
    for key, fields in _bib_entries().items():
        assert "title" in fields and "year" in fields, f"{key}: no title or year"
        if "doi" in fields:
            assert DOI.match(fields["doi"]), f"{key}: malformed doi {fields['doi']!r}"
        if "eprint" in fields:
            assert fields.get("archiveprefix") == "arXiv", f"{key}: eprint without arXiv prefix"
            match = ARXIV_ID.match(fields["eprint"])
            assert match and 1 <= int(match.group(2)) <= 12, f"{key}: malformed arXiv id"
            digits = 5 if int(match.group(1)) >= 15 else 4
            assert len(match.group(3)) == digits, f"{key}: arXiv id needs {digits} digits"
            assert 2000 + int(match.group(1)) <= int(fields["year"]), f"{key}: year before arXiv id"
        if "url" in fields:
            assert fields["url"].startswith("https://"), f"{key}: url {fields['url']!r}"
        assert {"doi", "eprint", "url"} & fields.keys(), f"{key}: no doi, arXiv eprint or url"


# --- the example ---------------------------------------------------------------


def test_the_papers_python_example_runs(tmp_path, monkeypatch):
    snippets = re.findall(r"```python\n(.*?)```", _body(), re.S)
    assert len(snippets) == 1, "paper.md should have exactly one python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(snippets[0], "paper.md (example)", "exec"), {})
