"""Small tables: test accuracy of the default recipe against `train.min_steps`, on the seed's
own 30-row sheet and on 100- and 500-row samples of the default data, over seeds, beside the
TF-IDF baseline on the same splits. Real MiniLM (models/pretrained, from `dvc repro
pretrained`); every figure of one run is measured in that run.

    python benchmarks/small_data.py --min-steps 0 100 200 --seeds 42 43 44

Writes docs/results/small_data.json after every training run, so that a cut run keeps what it
measured.

The learners (`--learners`): each method of src/bertclf/learners.py and TF-IDF + LR on the same
draws of N texts a class (SetFit's protocol: N a class drawn from a training set, scored on a
fixed test set; the N are all the labelled data a method gets: fine-tuning's validation split
comes out of them). Emotion (6 classes, its 2,000 test texts), samples of the default reviews
(scored on their own test split), the seed's sheet on repeated stratified 60/20/20 splits:

    python benchmarks/small_data.py --learners --data emotion --per-class 8 64 --draws 5 \
        --methods frozen contrastive tfidf

Text pairs and regression (`--data mrpc stsb --pairs 100 300`): N pairs drawn at random from
MRPC (accuracy on its 1,725 test pairs) or STS-B (Pearson's r on 1,000 pairs held out of its
training file), each pair encoded as the pipeline encodes it (one sequence, both texts);
TF-IDF is the pipeline's pair baseline (both sides, their difference, product and cosine).
`siamese` is a probe, not a learner: the pretrained encoder embeds each text of a pair alone
and a linear model reads [|u - v|, u * v, cos] (`siamese_probe`).

Writes docs/results/small_data_learners.json after every draw.
"""

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from harness import NEWS_SAMPLE, machine, news_sample_section, section  # noqa: E402

from bertclf.baseline import baseline_probabilities, fit_baseline  # noqa: E402
from bertclf.labels import LabelMap  # noqa: E402
from bertclf.prepare import prepare_splits  # noqa: E402
from bertclf.tokenization import TokenCache, encode_split, load_tokenizer  # noqa: E402

PRETRAINED = ROOT / "models/pretrained"
RESULTS = ROOT / "docs/results/small_data.json"
LEARNER_RESULTS = ROOT / "docs/results/small_data_learners.json"
FIXTURES = ROOT.parent / "shared" / "fixtures"


def datasets(scratch: Path) -> dict:
    """name -> the data section: the seed's sheet as conf/data/news_sample.yaml reads it, and
    samples of the default training reviews (stratified by nothing: as a user would cut one)."""
    reviews = pd.read_parquet(ROOT / "data/raw/fine_food/train.parquet")
    found = {"news_sample (30 rows)": news_sample_section()}
    for rows in (100, 500):
        path = scratch / f"fine_food_{rows}.parquet"
        reviews.sample(rows, random_state=0).to_parquet(path, index=False)
        found[f"fine_food ({rows} rows)"] = section(
            "data",
            name="table",
            path=str(path),
            test_path=None,
            id_column=None,
            val_fraction=0.2,
            test_fraction=0.2,
        )
    return found


def targets_of(frame: pd.DataFrame, label_map: LabelMap, regression=False) -> np.ndarray:
    if regression:
        return frame["label"].to_numpy(np.float32)
    return label_map.encode(frame["label"])


def cache(tokenizer, frame: pd.DataFrame, label_map, tokenize, regression=False) -> TokenCache:
    """A split's token cache as the tokenize stage writes it (pairs through encode_split)."""
    encoded = encode_split(tokenizer, frame, tokenize)
    labels = targets_of(frame, label_map, regression)[encoded.text_index]
    return TokenCache(
        frame["id"].to_numpy()[encoded.text_index],
        encoded.sequences,
        labels,
        pair_separator_id=encoded.pair_separator_id,
    )


def run_one(data, seed: int, min_steps: int, tokenizer) -> dict:
    from bertclf.prediction import predict_logits
    from bertclf.training import train_classifier

    splits, _ = prepare_splits(data, seed, section("task"))
    label_map = LabelMap.fit(splits["train"]["label"])
    tokenize = section("tokenize")
    train = dataclasses.replace(section("train"), min_steps=min_steps)
    start = time.perf_counter()
    model, _ = train_classifier(
        PRETRAINED,
        label_map,
        cache(tokenizer, splits["train"], label_map, tokenize),
        cache(tokenizer, splits["val"], label_map, tokenize),
        train,
        section("head"),
        tokenize,
        seed,
    )
    seconds = time.perf_counter() - start
    test = cache(tokenizer, splits["test"], label_map, tokenize)
    logits = predict_logits(model, test.sequences, 64, tokenize)
    accuracy = float((logits.argmax(axis=1) == test.labels).mean())
    train_texts, train_targets = splits["train"]["text"], label_map.encode(splits["train"]["label"])
    baseline = fit_baseline(train_texts, train_targets, 10.0, seed, "single_label")
    truth = label_map.encode(splits["test"]["label"])
    base = baseline_probabilities(baseline, splits["test"]["text"], len(label_map.classes))
    return {
        "test_accuracy": accuracy,
        "baseline_accuracy": float((base.argmax(axis=1) == truth).mean()),
        "test_texts": len(splits["test"]),
        "train_texts": len(splits["train"]),
        "epochs_run": len(model.history.history["loss"]),
        "train_seconds": round(seconds, 1),
    }


def emotion_draws(per_class: int, draws: int):
    """(seed, train frame, test frame): N texts a class drawn from Emotion's training set."""
    train = pd.read_json(FIXTURES / "emotion_train.jsonl", lines=True)
    test = pd.read_json(FIXTURES / "emotion_test.jsonl", lines=True)
    for seed in range(draws):
        drawn = train.groupby("label", group_keys=False).sample(per_class, random_state=seed)
        yield seed, drawn.reset_index(drop=True), test


def reviews_draws(per_class: int, draws: int):
    """N reviews a class of the default data's training file; its test file to score."""
    reviews = pd.read_parquet(ROOT / "data/raw/fine_food/train.parquet")
    reviews = reviews.rename(columns={"review": "text", "score": "label"})
    reviews["id"] = np.arange(len(reviews))
    test = pd.read_parquet(ROOT / "data/raw/fine_food/test.parquet")
    test = test.rename(columns={"review": "text", "score": "label"}).sample(
        min(2000, len(test)), random_state=0
    )
    test["id"] = np.arange(len(test))
    for seed in range(draws):
        drawn = reviews.groupby("label", group_keys=False).sample(per_class, random_state=seed)
        yield seed, drawn.reset_index(drop=True), test.reset_index(drop=True)


def sheet_draws(per_class: int, draws: int):
    """The seed's sheet on repeated stratified 60/20/20 splits: the 80% (train and validation)
    is the labelled data, the 20% the test (per_class is unused: the sheet is what it is)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    sheet = pd.read_excel(NEWS_SAMPLE).rename(columns={"EXCERPT": "text", "TAG": "label"})
    sheet["id"] = np.arange(len(sheet))
    splits = StratifiedShuffleSplit(n_splits=draws, test_size=0.2, random_state=0)
    for seed, (train, test) in enumerate(splits.split(sheet, sheet["label"])):
        yield (
            seed,
            sheet.iloc[train].reset_index(drop=True),
            sheet.iloc[test].reset_index(drop=True),
        )


def pair_draws(data: str, size: int, draws: int):
    """N pairs of MRPC (paraphrase or not; its own 1,725 test pairs to score) or STS-B (a
    0-5 similarity score; a fixed 1,000 of its training pairs held out to score, the N drawn
    from the rest), drawn at random as a user's sample would be."""
    columns = {"sentence1": "text", "sentence2": "text_pair", "score": "label"}
    train = pd.read_json(FIXTURES / f"{data}_train.jsonl", lines=True, dtype={"id": str})
    train = train.rename(columns=columns)
    if data == "mrpc":
        test = pd.read_json(FIXTURES / "mrpc_test.jsonl", lines=True, dtype={"id": str})
        test = test.rename(columns=columns)
    else:
        test = train.sample(1000, random_state=0)
        train = train.drop(test.index)
    for seed in range(draws):
        yield seed, train.sample(size, random_state=seed).reset_index(drop=True), test


DRAWS = {
    "emotion": emotion_draws,
    "reviews": reviews_draws,
    "news_sample": sheet_draws,
    "mrpc": lambda size, draws: pair_draws("mrpc", size, draws),
    "stsb": lambda size, draws: pair_draws("stsb", size, draws),
}
REGRESSION_DATA = {"stsb"}  # scored by Pearson's r; the others by accuracy


def headline(data: str) -> str:
    return "pearson" if data in REGRESSION_DATA else "accuracy"


def run_method(
    method: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    seed: int,
    tokenizer,
    regression=False,
    train_overrides: dict | None = None,
):
    """(test accuracy, or Pearson's r for a regression, and seconds) of one method on one
    draw. Pairs (a `text_pair` column) are encoded as the pipeline encodes them."""
    from scipy.stats import pearsonr

    from bertclf.baseline import baseline_inputs
    from bertclf.learners import learn
    from bertclf.prediction import predict_logits

    def fitted_map(frame):
        return LabelMap.fit_scores(frame["label"]) if regression else LabelMap.fit(frame["label"])

    def score(outputs, frame, label_map):
        if regression:
            return float(pearsonr(outputs[:, 0], frame["label"].to_numpy(float))[0])
        return float((outputs.argmax(axis=1) == label_map.encode(frame["label"])).mean())

    task = "regression" if regression else "single_label"
    label_map = fitted_map(train)
    start = time.perf_counter()
    if method == "tfidf":
        targets = targets_of(train, label_map, regression)
        baseline = fit_baseline(baseline_inputs(train), targets, 10.0, seed, task)
        outputs = baseline_probabilities(baseline, baseline_inputs(test), len(label_map.classes))
        return score(outputs, test, label_map), time.perf_counter() - start
    if method == "siamese":
        outputs = siamese_probe(train, test, tokenizer, regression, seed)
        return score(outputs, test, label_map), time.perf_counter() - start
    tokenize = section("tokenize")
    fit_rows, val_rows = train, train.iloc[:0]
    if method == "finetune":  # its validation split comes out of the N
        from sklearn.model_selection import train_test_split

        fit_rows, val_rows = train_test_split(
            train,
            test_size=0.25,
            stratify=None if regression else train["label"],
            random_state=seed,
        )
        label_map = fitted_map(fit_rows)
    learned = learn(
        PRETRAINED,
        label_map,
        cache(tokenizer, fit_rows, label_map, tokenize, regression),
        cache(tokenizer, val_rows, label_map, tokenize, regression),
        section("train", **(train_overrides or {})),
        section("head"),
        tokenize,
        section("learner", method=method),
        seed,
    )
    seconds = time.perf_counter() - start
    test_cache = cache(tokenizer, test, label_map, tokenize, regression)
    outputs = predict_logits(learned.model, test_cache.sequences, 64, tokenize)
    return score(outputs, test, label_map), seconds  # one sequence a row (head)


def siamese_probe(train, test, tokenizer, regression: bool, seed: int) -> np.ndarray:
    """A probe for text pairs, not a learner (the package's model reads a pair as one
    sequence): the pretrained encoder embeds each text of a pair alone (mean pooling, unit
    length), and scikit-learn fits ridge (regression) or logistic regression on
    [|u - v|, u * v, cos(u, v)]. Test outputs: scores, or probabilities in label-map order."""
    import json as json_module

    from sklearn.linear_model import LogisticRegressionCV, RidgeCV

    from bertclf.layout import ENCODER_CONFIG
    from bertclf.learners import embed, linear_head, pooled_encoder
    from bertclf.model import build_classifier

    tokenize = section("tokenize")
    config = json_module.loads((PRETRAINED / ENCODER_CONFIG).read_text())
    model = build_classifier(config, linear_head(section("head")), 1, PRETRAINED)
    pooled = pooled_encoder(model)

    def vectors(texts) -> np.ndarray:
        frame = pd.DataFrame({"text": list(texts), "id": np.arange(len(texts))})
        encoded = encode_split(tokenizer, frame, tokenize)
        found = embed(pooled, TokenCache(frame["id"].to_numpy(), encoded.sequences, None), tokenize)
        return found / np.linalg.norm(found, axis=1, keepdims=True)

    def features(frame) -> np.ndarray:
        u, v = vectors(frame["text"]), vectors(frame["text_pair"])
        return np.hstack([np.abs(u - v), u * v, (u * v).sum(axis=1, keepdims=True)])

    x, test_x = features(train), features(test)
    if regression:
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x, train["label"].to_numpy(float))
        return ridge.predict(test_x).reshape(-1, 1)
    label_map = LabelMap.fit(train["label"])
    head = LogisticRegressionCV(Cs=np.logspace(-3, 2, 11), cv=5, max_iter=2000, random_state=seed)
    head.fit(x, label_map.encode(train["label"]))
    return head.predict_proba(test_x)


def learners(args) -> None:
    tokenizer = load_tokenizer(PRETRAINED)
    results = json.loads(LEARNER_RESULTS.read_text()) if LEARNER_RESULTS.exists() else {}
    results.setdefault("runs", [])
    results["machine"] = machine()
    for data in args.data:
        sizes = {"news_sample": [0], "mrpc": args.pairs, "stsb": args.pairs}
        for per_class in sizes.get(data, args.per_class):
            for seed, train, test in DRAWS[data](per_class, args.draws):
                if seed < args.first_draw:
                    continue
                for method in args.methods:
                    regression = data in REGRESSION_DATA
                    figure, seconds = run_method(
                        method, train, test, seed, tokenizer, regression, args.train
                    )
                    run = {
                        "data": data,
                        "per_class": per_class,  # mrpc, stsb: pairs in all
                        "train_texts": len(train),
                        "test_texts": len(test),
                        "draw": seed,
                        "method": method,
                        "learner_learning_rate": section("learner").learning_rate,
                        **({"train": args.train} if args.train and method == "finetune" else {}),
                        headline(data): round(figure, 4),
                        "seconds": round(seconds, 1),
                    }
                    results["runs"].append(run)
                    LEARNER_RESULTS.write_text(json.dumps(results, indent=2) + "\n")
                    print(json.dumps(run), flush=True)
    print(learner_table(results["runs"]))


def learner_table(runs: list[dict]) -> str:
    """Markdown: mean accuracy (Pearson's r for a regression; standard deviation) and median
    seconds per data, N, method."""
    frame = pd.DataFrame(runs)
    if "pearson" in frame:
        frame["accuracy"] = frame["accuracy"].fillna(frame["pearson"])
    rate = frame["learner_learning_rate"].map(lambda r: f" {r:g}")  # contrastive's own rate
    frame["method"] = frame["method"] + rate.where(frame["method"] == "contrastive", "")
    if "train" in frame:  # finetune with train values of its own
        own = frame["train"].map(
            lambda t: "".join(f" {k}={float(v):g}" for k, v in t.items()) if t == t else ""
        )
        frame["method"] = frame["method"] + own
    lines = [
        "| data | texts a class (pairs: in all) | method | accuracy or r, mean (sd) | draws | s |",
        "| --- " * 6 + "|",
    ]
    for (data, n, method), group in frame.groupby(["data", "per_class", "method"], sort=False):
        accuracy = group["accuracy"]
        lines.append(
            f"| {data} | {n or group['train_texts'].iloc[0]} | {method} | {accuracy.mean():.3f} "
            f"({accuracy.std(ddof=1):.3f}) | {len(group)} | {group['seconds'].median():.0f} |"
        )
    return "\n".join(lines)


def number_or_text(value: str):
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        return yaml.safe_load(value)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--learners", action="store_true", help="the learners' comparison")
    options.add_argument("--data", nargs="+", default=["emotion", "news_sample", "reviews"])
    options.add_argument("--per-class", type=int, nargs="+", default=[8, 16, 32, 64])
    options.add_argument("--pairs", type=int, nargs="+", default=[100, 300, 1000])
    options.add_argument(
        "--train",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="finetune: train section values other than conf/'s (e.g. learning_rate=1e-4)",
    )
    options.add_argument("--draws", type=int, default=5)
    options.add_argument("--first-draw", type=int, default=0, help="skip the draws before it")
    options.add_argument("--methods", nargs="+", default=["tfidf", "frozen", "contrastive"])
    options.add_argument("--min-steps", type=int, nargs="+", default=[0, 100, 200])
    options.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    options.add_argument("--table", action="store_true", help="print the committed results")
    args = options.parse_args()
    args.train = {k: number_or_text(v) for k, v in (kv.split("=", 1) for kv in args.train)}
    if args.learners and args.table:
        print(learner_table(json.loads(LEARNER_RESULTS.read_text())["runs"]))
        return
    if args.learners:
        learners(args)
        return
    if args.table:
        print(table(json.loads(RESULTS.read_text())["runs"]))
        return
    import tempfile

    tokenizer = load_tokenizer(PRETRAINED)
    results = {"machine": machine(), "recipe": "conf/train/default.yaml", "runs": []}
    with tempfile.TemporaryDirectory() as scratch:
        for name, data in datasets(Path(scratch)).items():
            for min_steps in args.min_steps:
                for seed in args.seeds:
                    figures = run_one(data, seed, min_steps, tokenizer)
                    results["runs"].append(
                        {"data": name, "min_steps": min_steps, "seed": seed, **figures}
                    )
                    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
                    print(json.dumps(results["runs"][-1]), flush=True)
    print(table(results["runs"]))


def table(runs: list[dict]) -> str:
    """Markdown: mean test accuracy (and its range over the seeds) per data and min_steps."""
    frame = pd.DataFrame(runs)
    lines = [
        "| data | train.min_steps | test accuracy, mean (min-max) | baseline | epochs | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for (data, steps), group in frame.groupby(["data", "min_steps"], sort=False):
        accuracy = group["test_accuracy"]
        lines.append(
            f"| {data} | {steps} | {accuracy.mean():.3f} ({accuracy.min():.3f}-"
            f"{accuracy.max():.3f}) | {group['baseline_accuracy'].mean():.3f} | "
            f"{np.median(group['epochs_run']):.0f} | {group['train_seconds'].median():.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
