"""dvc.yaml as DVC's users expect it: every stage reruns when any code it runs changes, and the
compact metrics and training curves are declared where `dvc metrics` / `dvc plots` / `dvc exp
show` find them at any revision."""
from __future__ import annotations

import ast
import csv
import json
import re
from pathlib import Path

import pytest
import yaml

from core import tracking

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("core", "features", "models", "serving", "flows")


def module_file(module: str) -> Path | None:
    """The repo file of a dotted module name (package -> its __init__.py), None outside the repo."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*module.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports run too)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*parts, base] if p)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from features import store`
    return out


def import_closure(module: str) -> set[Path]:
    """Repo files reachable by imports from ``module``, parent packages' __init__.py included."""
    todo, seen = [module], set()
    while todo:
        mod = todo.pop()
        parts = mod.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__.py and a/b/__init__.py
            f = module_file(".".join(parts[:i]))
            if f is not None and f not in seen:
                seen.add(f)
                rel = f.relative_to(ROOT).with_suffix("").parts
                name = ".".join(rel[:-1] if rel[-1] == "__init__" else rel)
                todo.extend(imported_modules(f) | {name})
    return seen


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_the_closure_finder_follows_lazy_and_package_imports():
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure("models.monitor")}
    assert {"models/drift.py", "models/drift_report.py", "models/interest_mix.py", "core/params.py", "features/__init__.py",
            "models/__init__.py"} <= closure
    assert not any(p.startswith("serving/") for p in closure)  # imports go one way


@pytest.mark.parametrize("stage", sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]))
def test_stage_deps_cover_the_code_it_imports(stage):
    spec = stages()[stage]
    cmd = spec["cmd"].split()
    assert cmd[:3] == ["python", "-m", cmd[2]], f"stage {stage}: expected `python -m <module>`, got {spec['cmd']}"
    deps = [next(iter(d)) if isinstance(d, dict) else d for d in spec["deps"]]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in import_closure(cmd[2]) if not covered(p, deps))
    assert not missing, f"dvc.yaml stage '{stage}' runs these files but does not depend on them: {missing}"


# settings that say where files go, not what a stage computes: their outputs move, their results do not
WHERE_FILES_GO = {"data.raw_dir", "train.out_dir", "features.repo_dir", "tracking.metrics_dir", "evaluate.out", "package.out"}


@pytest.mark.parametrize("stage", sorted(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]))
def test_stage_params_cover_the_settings_its_module_reads(stage):
    """Every ``params.<section>.<key>`` the stage's own module reads is in its ``params`` (the key or
    its whole section), so changing it reruns the stage (the package stage once missed
    ``features.recent_half_life_events``, which it writes into the served model's metadata)."""
    spec = stages()[stage]
    module = spec["cmd"].split()[2]
    listed = {p for p in spec.get("params", []) if isinstance(p, str)}
    read = set(re.findall(r"\bparams\.([a-z_]+\.[a-z_]+)", module_file(module).read_text())) - WHERE_FILES_GO
    missing = sorted(k for k in read if k not in listed and k.split(".")[0] not in listed)
    assert not missing, f"dvc.yaml stage '{stage}' reads these params but does not list them: {missing}"


def test_features_stage_depends_on_every_feast_repo_file():
    """Feast loads the repo's files by path, not by import: each one must still rerun `features`."""
    deps = stages()["features"]["deps"]
    repo = ROOT / "features/repo"
    files = [p for p in repo.iterdir() if p.suffix in (".py", ".yaml") and p.name != "__init__.py"]
    assert files
    assert [p.name for p in files if not covered(p, deps)] == []


def test_no_stage_depends_on_an_output_of_a_later_or_same_stage():
    """A folder dep that contains another stage's output (features/ holds features/repo/data) is a cycle."""
    order = list(stages())
    outs = {s: [next(iter(o)) if isinstance(o, dict) else o for o in spec.get("outs", []) + spec.get("metrics", []) + spec.get("plots", [])]
            for s, spec in stages().items()}
    for i, s in enumerate(order):
        for d in stages()[s]["deps"]:
            for later in order[i:]:
                for o in outs[later]:
                    assert not (o == d or o.startswith(d.rstrip("/") + "/")), f"stage {s} depends on {d}, which holds {later}'s output {o}"


def test_compact_metrics_are_versioned_in_git_not_ignored():
    """`dvc metrics diff` / `dvc exp show` read metrics at other revisions: they must be in git."""
    metric_files = [next(iter(m)) for spec in stages().values() for m in spec.get("metrics", [])]
    assert sorted(metric_files) == ["metrics/evaluate.json", "metrics/ingest.json", "metrics/monitor.json"]
    for spec in stages().values():
        for m in spec.get("metrics", []) + spec.get("plots", []):
            assert next(iter(m.values())) == {"cache": False} or next(iter(m.values())).get("cache") is False
    ignore = (ROOT / ".gitignore").read_text().split()
    assert not any(p.strip("/") in ("metrics", "metrics/*") for p in ignore)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["tracking"]["metrics_dir"] == "metrics"


def test_plots_point_at_columns_the_train_stage_writes(tmp_path):
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    history = {"interest": [{"epoch": 1, "loss": 5.0, "valid_ndcg@10": 0.1, "valid_hr@10": 0.2},
                            {"epoch": 2, "loss": 4.0, "valid_ndcg@10": 0.2, "valid_hr@10": 0.3}],
               "sasrec": [{"epoch": 1, "loss": 6.0, "valid_ndcg@10": 0.05, "valid_hr@10": 0.1}],
               "hybrid": [{"weights": {"item_knn": 1.0}, "valid_ndcg": 0.3}]}  # a weight search, not epochs
    paths = {p.stem: p for p in tracking.write_train_history(tmp_path, {"history": history})}
    assert sorted(paths) == ["interest", "sasrec"]  # the hybrid's weight search is not a curve
    rows = {m: list(csv.DictReader(p.open())) for m, p in paths.items()}
    assert [r["epoch"] for r in rows["interest"]] == ["1", "2"]
    assert [r["epoch"] for r in rows["sasrec"]] == ["1"]  # stopped early: its file ends there, no empty cell to draw as 0
    assert float(rows["interest"][1]["valid_ndcg@10"]) == pytest.approx(0.2)
    assert spec["plots"], "dvc.yaml declares no plots"
    for plot in spec["plots"]:
        (name, cfg), = plot.items()
        for file, cols in cfg["y"].items():
            assert file.startswith(f"metrics/{tracking.HISTORY_DIR}/"), file
            model = Path(file).stem
            for c in [cols] if isinstance(cols, str) else cols:
                assert c in rows[model][0], f"plot '{name}' wants column {c} of {file}"
        assert cfg["x"] == "epoch"


def test_compact_metrics_layout_is_a_few_top_level_numbers():
    report = {"selected": "hybrid", "models": {
        "hybrid": {"valid": {"ndcg@10": 0.44, "hr@10": 0.7}, "test": {"ndcg@10": 0.4527123, "hr@10": 0.71, "mrr": 0.4}},
        "sasrec": {"valid": {"ndcg@10": 0.42, "hr@10": 0.6}, "test": {"ndcg@10": 0.4342, "hr@10": 0.69, "mrr": 0.38}}}}
    m = tracking.evaluate_metrics(report)
    assert m["selected"] == "hybrid" and m["test_ndcg@10"] == 0.4527 and m["runner_up_test_ndcg@10"] == 0.4342
    assert all(not isinstance(v, dict) for v in m.values()) and len(m) <= 8
    assert not any("cold_item" in key or "interest_shift" in key for key in m)  # a report without slices: no slice keys
    report["models"]["hybrid"]["test_slices"] = {"cold_item": {"users": 0}, "interest_shift": {"ndcg@10": 0.31234, "users": 9},
                                                 "short_history": {"ndcg@10": 0.2, "users": 5}}
    sliced = tracking.evaluate_metrics(report)
    assert sliced == {**m, "test_interest_shift_ndcg@10": 0.3123}  # cold_item has no users; short_history is not compact
    assert len(sliced) <= 8
    mon = tracking.monitor_metrics({"drift_share": 0.8, "control_drift_share": 0.7, "retrain_threshold": 0.95,
                                     "drifted_columns": 12, "retrain": False, "columns": {}})
    assert mon == {"drift_share": 0.8, "control_drift_share": 0.7, "retrain_threshold": 0.95, "drifted_columns": 12, "retrain": False}
    path = tracking.write_metrics(Path(pytest.importorskip("tempfile").mkdtemp()) / "m.json", m)
    assert json.loads(path.read_text()) == m
