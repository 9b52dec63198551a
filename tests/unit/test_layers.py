"""The house's floors (issue 12): imports go one way, so each package can be read, tested and
shipped without the ones above it. ``core`` is the ground floor; ``features`` (the data stages)
stands on it; ``models`` on both; ``serving`` on those three; ``flows`` (orchestration) on all.
A lazy import inside a function counts as much as one at the top."""
from __future__ import annotations

import pytest

from test_dvc_yaml import ROOT, imported_modules

FLOORS = ("core", "features", "models", "serving", "flows")


@pytest.mark.parametrize("package", FLOORS)
def test_a_package_imports_only_the_floors_beneath_it(package):
    above = set(FLOORS[FLOORS.index(package) + 1:])
    wrong = sorted(
        f"{path.relative_to(ROOT).as_posix()} imports {mod}"
        for path in (ROOT / package).rglob("*.py")
        for mod in imported_modules(path)
        if mod.split(".")[0] in above
    )
    assert not wrong, "imports that point up a floor:\n" + "\n".join(wrong)


def _importers(packages: tuple[str, ...], library: str) -> list[str]:
    return sorted(p.relative_to(ROOT).as_posix() for pkg in packages for p in (ROOT / pkg).rglob("*.py")
                  if any(m.split(".")[0] == library for m in imported_modules(p)))


def test_the_data_floors_hold_no_torch():
    """``core`` and ``features`` stay light enough for feature jobs and a service's log readers."""
    assert not _importers(("core", "features"), "torch")


def test_only_the_flows_import_prefect():
    """Every stage is a plain function; Prefect is one of its two front doors, not a dependency."""
    assert not _importers(("core", "features", "models", "serving"), "prefect")
