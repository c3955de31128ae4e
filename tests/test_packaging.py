"""pyproject.toml as setuptools reads it: the licence is an SPDX expression
(a TOML table there is deprecated by setuptools and refused from 2027-02-18)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_project_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "Apache-2.0"
    assert not any(c.startswith("License ::") for c in project.get("classifiers", [])), "classifiers must not repeat an SPDX licence"
