"""The README is a front door that stays true: its DAG is `dvc dag`'s, its links resolve, its
figures are the committed reports', and the tool is quiet by default."""

import importlib.util
import json
import re
import subprocess
import sys

from helpers import ROOT, command_env, run

from bertclf.errors import DEBUG_VARIABLE as DEBUG

README = ROOT / "README.md"


def mermaid_edges(text: str, names: dict[str, str] | None = None) -> set[tuple[str, str]]:
    block = text.split("```mermaid")[1].split("```")[0]
    nodes = dict(re.findall(r'(\w+)\["([^"]+)"\]', block))
    names = {**nodes, **(names or {})}
    return {
        (names.get(a, a), names.get(b, b)) for a, b in re.findall(r"(\w+)\s*-->\s*(\w+)", block)
    }


def test_readme_draws_the_dag_that_dvc_draws():
    drawn = run(["dvc", "dag", "--mermaid"], ROOT).stdout
    assert mermaid_edges(README.read_text()) == mermaid_edges("```mermaid" + drawn + "```")


def test_readme_is_short_and_every_link_in_it_and_the_docs_resolves():
    assert len(README.read_text().splitlines()) <= 250
    pages = [README, *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"
    linked = set(re.findall(r"\(docs/([\w-]+\.md)\)", README.read_text()))
    assert linked == {p.name for p in pages[1:]}  # every page is reachable from the README


def test_readme_figures_are_the_committed_reports():
    text = " ".join(README.read_text().split())
    test = json.loads((ROOT / "reports/metrics.json").read_text())["test"]
    base = json.loads((ROOT / "reports/baseline.json").read_text())["test"]
    assert f"test accuracy {test['accuracy']:.3f} and macro F1 {test['macro_f1']:.3f}" in text
    assert f"the baseline reaches {base['accuracy']:.3f} and {base['macro_f1']:.3f}" in text


def test_metrics_command_prints_the_headline_beside_the_baseline():
    out = run(["bertclf", "metrics"], ROOT).stdout.splitlines()
    test = json.loads((ROOT / "reports/metrics.json").read_text())["test"]
    assert out[0].split()[:3] == ["test,", str(test["n"]), "texts"]
    accuracy = next(line for line in out if line.startswith("accuracy")).split()
    assert float(accuracy[1]) == round(test["accuracy"], 4)
    assert len(out) <= 8


def test_tensorflow_through_bertclf_prints_no_cuda_probe_error(tmp_path):
    env = {k: v for k, v in command_env().items() if k not in ("TF_CPP_MIN_LOG_LEVEL", DEBUG)}
    code = "import bertclf, tensorflow as tf; print(int(tf.constant(1) + 1))"
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert quiet.stdout.strip() == "2", quiet.stderr
    assert "cuInit" not in quiet.stderr
    level = "import bertclf, os; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    for debug, expected in (("0", "3"), ("1", "None")):  # debugging keeps TensorFlow's default
        shown = subprocess.run(
            [sys.executable, "-c", level], env={**env, DEBUG: debug}, capture_output=True, text=True
        )
        assert shown.stdout.strip() == expected


def test_multi_label_page_shows_the_committed_reuters_runs():
    """docs/multi-label.md's tables are what benchmarks/reuters.py renders from the committed
    reports/multi_label_reuters.json."""
    spec = importlib.util.spec_from_file_location("reuters", ROOT / "benchmarks/reuters.py")
    reuters = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reuters)
    runs = json.loads((ROOT / "reports/multi_label_reuters.json").read_text())["runs"]
    page = (ROOT / "docs/multi-label.md").read_text()
    assert reuters.table(runs) in page
    assert reuters.rules_table(runs) in page


def test_pairs_page_shows_the_committed_runs():
    """docs/pairs-and-regression.md's table is what benchmarks/pairs.py renders from the
    committed docs/results/pairs_and_regression.json (MRPC and STS-B)."""
    spec = importlib.util.spec_from_file_location("pairs", ROOT / "benchmarks/pairs.py")
    pairs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pairs)
    runs = json.loads((ROOT / "docs/results/pairs_and_regression.json").read_text())["runs"]
    assert {run["data"] for run in runs} == {"mrpc", "stsb"}
    assert pairs.table(runs) in (ROOT / "docs/pairs-and-regression.md").read_text()


def test_encoder_stack_page_shows_the_committed_comparison():
    """docs/encoder-stack.md's table is what benchmarks/compare_stacks.py renders from the
    committed reports/stack_comparison.json (the benchmark before and after Keras 3)."""
    spec = importlib.util.spec_from_file_location(
        "compare_stacks", ROOT / "benchmarks/compare_stacks.py"
    )
    compare_stacks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare_stacks)
    result = json.loads((ROOT / "reports/stack_comparison.json").read_text())
    assert compare_stacks.table(result) in (ROOT / "docs/encoder-stack.md").read_text()


def test_runtimes_page_shows_the_committed_benchmark():
    """docs/runtimes.md's table is what `benchmarks/bench.py --table` renders from the committed
    reports/bench.json (one `make bench` run: every runtime and precision on the same batches)."""
    spec = importlib.util.spec_from_file_location("bench", ROOT / "benchmarks/bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = json.loads((ROOT / "reports/bench.json").read_text())
    page = (ROOT / "docs/runtimes.md").read_text()
    assert bench.runtime_table(result) in page
    assert f"{result['predict_speedup']:.1f} times the seed's way" in page


def test_default_recipe_page_shows_the_committed_study_and_runs():
    """docs/default-recipe.md's tables are what benchmarks/recipes.py renders from the committed
    docs/results/ (the study's trials, and each recipe's runs over three seeds)."""
    spec = importlib.util.spec_from_file_location("recipes", ROOT / "benchmarks/recipes.py")
    recipes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipes)
    page = (ROOT / "docs/default-recipe.md").read_text()
    assert recipes.study_markdown("default") in page
    assert recipes.recipes_markdown() in page
    runs = list((ROOT / "docs/results/recipes").glob("*.json"))
    assert len(runs) == 6, runs  # two recipes, three seeds each


def test_the_plots_page_template_is_installed_offline_and_checks_its_pins(tmp_path):
    """`make install` writes the template that .dvc/config names for `dvc plots show`: Vega,
    Vega-Lite and vega-embed inline, no script from a network; a tarball whose sha512 is not
    the pinned one is refused."""
    import configparser
    import re
    import subprocess
    import sys

    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc/config")
    template = ROOT / ".dvc" / config["plots"]["html_template"]
    html = template.read_text(encoding="utf-8")
    assert "{plot_divs}" in html and re.findall(r"<script[^>]*\bsrc=", html) == []
    assert "cdn." not in html.split("<script>")[0]  # the page's own markup names no network
    for library in ("vega 5.20.2", "vega-lite 5.2.0", "vega-embed 6.18.2"):
        assert f"<script>/* {library} */" in html
    fake = tmp_path / "vega-5.20.2.tgz"
    fake.write_bytes(b"not the real one")
    script = (
        "import sys; sys.path.insert(0, 'tools'); import plots_template as t\n"
        f"t.check(__import__('pathlib').Path({str(fake)!r}), t.PINS['vega'][1])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: vega-5.20.2.tgz: sha512 is not the pinned one; not used"


def test_small_data_page_shows_the_committed_measurement():
    """docs/small-data.md's table is what benchmarks/small_data.py renders from
    docs/results/small_data.json, and the default it chose is conf/'s."""
    import yaml

    spec = importlib.util.spec_from_file_location("small_data", ROOT / "benchmarks/small_data.py")
    small_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(small_data)
    runs = json.loads((ROOT / "docs/results/small_data.json").read_text())["runs"]
    assert small_data.table(runs) in (ROOT / "docs/small-data.md").read_text()
    assert {r["min_steps"] for r in runs} == {0, 100} and len(runs) == 12
    default = yaml.safe_load((ROOT / "conf/train/default.yaml").read_text())["min_steps"]
    assert default == 100
