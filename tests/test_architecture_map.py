"""docs/architecture.md is a map: every file and folder it names exists, and every package is on it."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = ROOT / "docs" / "architecture.md"
TOP = ("growth", "worker", "app", "migrations", "tests", "bench", "examples", "docs")


def named_paths() -> set[str]:
    """Every `growth/...`, `worker/...`-style path in backticks (a table cell may hold several)."""
    text = MAP.read_text()
    paths = set()
    for code in re.findall(r"`([^`]+)`", text):
        for token in re.split(r"[\s,]+", code):
            if re.fullmatch(rf"(?:{'|'.join(TOP)})/[\w./]*", token) and not token.startswith("docs/architecture"):
                paths.add(token.split(":")[0])
    return paths


def test_every_path_on_the_map_exists() -> None:
    paths = named_paths()
    assert {"worker/store/", "worker/runners/", "app/queries.py"} <= paths  # the reader above reads the map
    assert sorted(path for path in paths if not (ROOT / path).exists()) == []


def test_every_package_is_on_the_map() -> None:
    paths = named_paths()
    packages = sorted(str(init.parent.relative_to(ROOT)) + "/" for top in ("growth", "worker", "app")
                      for init in (ROOT / top).rglob("__init__.py"))
    mentioned = {path if path.endswith("/") else path.rsplit("/", 1)[0] + "/" for path in paths}
    missing = [package for package in packages
               if package not in mentioned and package not in {"growth/", "worker/", "app/"}
               and not any(path.startswith(package) for path in paths)]
    assert missing == []
