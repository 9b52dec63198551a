"""bentofile.yaml: what `bentoml build` packs, checked without building (the e2e test builds it)."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from test_dvc_yaml import import_closure

ROOT = Path(__file__).resolve().parents[2]


def test_bentofile_points_at_the_service_and_packs_its_code():
    spec = yaml.safe_load((ROOT / "bentofile.yaml").read_text())
    assert spec["service"] == "serving.service:Recommender"
    module, cls = spec["service"].split(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).read_text().count(f"class {cls}") == 1
    # every package the service imports, directly or not, is packed (core/ was once left out)
    packages = {f.relative_to(ROOT).parts[0] for f in import_closure("serving.service")}
    assert packages >= {"core", "features", "models", "serving"}
    for pkg in packages:
        assert f"{pkg}/**/*.py" in spec["include"], pkg
    assert "features/repo/**" in spec["include"] and "features/repo/data/" in spec["exclude"]
    assert spec["python"]["lock_packages"] is False and spec["python"]["requirements_txt"] == "./requirements.txt"
    envs = {e["name"]: e["value"] for e in spec["envs"]}
    assert envs["PULSE_REQUIRE_API_KEY"] == "1"  # locked by default in the Bento
    assert "PULSE_API_KEY" not in envs  # a secret is given at run time, never baked into the image


def test_requirements_txt_is_pyprojects_dependency_list():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines == deps, "requirements.txt drifted from pyproject.toml's [project].dependencies"


def test_make_serve_binds_loopback_unless_told_otherwise():
    make = (ROOT / "Makefile").read_text()
    assert "HOST ?= 127.0.0.1" in make and "--host $(HOST)" in make
    assert "--host 127.0.0.1" in (ROOT / "README.md").read_text()
