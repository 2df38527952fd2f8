"""The README stands on its own (issue 9, 3.6): a user's clone has no ../shared, no guide and no
ARCHITECTURE.md, so the README names no document or path the repository does not hold."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_names_no_document_outside_the_repository():
    docs = set(re.findall(r"[\w./-]*\b[\w-]+\.md\b", README))
    assert docs, "the README links DEVELOPING.md at least"
    missing = sorted(d for d in docs if not (ROOT / d).is_file())
    assert missing == [], f"the README refers to documents a clone does not have: {missing}"
    assert not re.search(r"\bthe guide\b", README, re.I), \
        "the README leans on a guide the user does not have"


def test_readme_paths_exist():
    paths = set(re.findall(r"`((?:engine|roles|scripts|contracts|tests)/[\w./-]*)", README))
    assert paths
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert missing == [], f"the README names paths the repository does not hold: {missing}"
