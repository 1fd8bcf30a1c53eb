"""The `bertclf` command: predict with or serve a packaged model; compose params.yaml from conf/."""

import argparse
import itertools
import os
import re
from pathlib import Path

from bertclf.batch_prediction import (
    check_pair_option,
    input_columns,
    input_texts,
    output_columns,
    prediction_frame,
)
from bertclf.errors import BertclfError, exits_cleanly


def predict(args: argparse.Namespace) -> None:
    """Stream the input in chunks of --chunk-rows; with --shard I/N keep every N-th chunk from
    the I-th, so N jobs together cover the file once. The input is checked before the package
    is read, and each chunk before it is predicted."""
    from contextlib import ExitStack

    from tqdm import tqdm

    from bertclf.files import atomic_path
    from bertclf.package_reader import open_package
    from bertclf.tables import TableWriter, rows_read, spreadsheet_safe, table_format

    if args.engine == "ray":
        return predict_with_ray(args)
    shard, shards = parse_shard(args.shard)
    check_output_path(args.output, args.input)
    output_format = table_format(args.output)  # an unknown output type is refused before any work
    if args.spreadsheet_safe and output_format not in (".csv", ".tsv"):
        raise BertclfError(f"{args.output}: --spreadsheet-safe is for CSV and TSV output")
    if output_format == ".xlsx":  # what XLSX cannot hold is refused before any prediction
        check_xlsx_output(args, shard, shards, input_columns(args))

    seen = {"rows": 0}
    selected = read_shard(args, shard, shards, seen)
    classifier, writer, rows = None, None, 0
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(args.output))
        bar = stack.enter_context(tqdm(unit="row", desc="predict", disable=args.quiet))
        for chunk, texts, pairs in selected:
            if classifier is None:  # the package, once the first chunk is checked
                package = stack.enter_context(open_package(args.model, args.expect_sha256))
                classifier = load_package(args, package)
                columns = output_columns(args, classifier.task)
                writer = stack.enter_context(TableWriter(tmp, columns))
            out = prediction_frame(args, classifier, chunk, texts, output_format, pairs)
            try:
                writer.write(spreadsheet_safe(out) if args.spreadsheet_safe else out)
            except BertclfError as error:  # it names the scratch file's problem, not the file
                raise BertclfError(f"{args.output}: {error}") from None
            rows += len(out)
            bar.update(len(out))
        if writer is None:  # no rows: the header alone, its columns by the package's task
            from bertclf.tasks import task_of

            with open_package(args.model, args.expect_sha256) as package:
                task = task_of(package.label_map)
            stack.enter_context(TableWriter(tmp, output_columns(args, task)))
    part = f" (shard {shard}/{shards})" if shards > 1 else ""
    print(f"wrote {rows} predictions to {args.output}{part}")
    print(f"{args.input}: read {rows_read(args.input, seen['rows'])}")


def explain(args: argparse.Namespace) -> None:
    """Token attributions of each text's answer, as an HTML page or JSON Lines. The input is
    read and checked whole (at most --max-rows texts: each costs --steps forward and backward
    passes) before the package is read; the output appears only when complete."""
    from tqdm import tqdm

    from bertclf.classifier import Classifier
    from bertclf.explanation_page import output_format, write_explanations
    from bertclf.files import atomic_path
    from bertclf.package_reader import open_package

    check_output_path(args.output, args.input)
    output_format(args.output)
    chunks, texts, pairs = [], [], []
    for chunk, chunk_texts, chunk_pairs in read_shard(args, 0, 1):
        chunks.append(chunk)
        texts += chunk_texts
        pairs += chunk_pairs or []
        if len(texts) > args.max_rows:
            raise BertclfError(
                f"{args.input}: more than {args.max_rows} texts; explain a sample, or raise "
                "--max-rows (each text costs --steps forward and backward passes)"
            )
    ids = None
    if args.id_column:
        ids = [value for chunk in chunks for value in chunk[args.id_column].tolist()]
    with open_package(args.model, args.expect_sha256) as package:
        classifier = Classifier.from_package(package, runtime="tensorflow")
    check_pair_option(args, classifier)
    classifier.explainer()  # a package that cannot explain is refused before any work
    print(f"{args.model}: integrated gradients, {args.steps} steps, baseline {args.baseline}, "
          "on TensorFlow", flush=True)  # fmt: skip
    results = []
    for i in tqdm(range(len(texts)), unit="text", desc="explain", disable=args.quiet):
        results += classifier.explain(
            texts[i], pairs[i] if args.text_pair_column else None, args.label, args.steps,
            args.baseline,
        )  # fmt: skip
    method = f"integrated gradients, {args.steps} steps, {args.baseline} baseline"
    with atomic_path(args.output) as tmp:
        write_explanations(tmp, results, ids, f"bertclf explain: {args.input}", method)
    print(f"wrote {len(results)} explanations to {args.output}")


def predict_with_ray(args: argparse.Namespace) -> None:
    """`--engine ray`: Ray Data reads, splits and schedules; the options that only the local
    engine has are refused."""
    try:
        from bertclf.ray_predict import predict_on_ray
    except ImportError as error:
        raise BertclfError(
            f"--engine ray needs Ray Data: pip install 'bertclf[ray]' ({error})"
        ) from None
    local_only = {"--shard": args.shard != "0/1", "--top-k": args.top_k is not None,
                  "--spreadsheet-safe": args.spreadsheet_safe}  # fmt: skip
    for option, given in local_only.items():
        if given:
            raise BertclfError(f"{option} is for the local engine; --engine ray splits by itself")
    rows = predict_on_ray(args)
    print(f"wrote {rows} predictions to {args.output}/ (Parquet partitions)")


def load_package(args: argparse.Namespace, package):
    """The classifier of the package `open_package` read from --model, run as --runtime and
    --precision say; the first line of the output says what runs it."""
    from bertclf.classifier import Classifier

    classifier = Classifier.from_package(package, runtime=args.runtime, precision=args.precision)
    print(f"{args.model}: {classifier.describe()}", flush=True)
    return classifier


def read_shard(args: argparse.Namespace, shard: int, shards: int, seen: dict | None = None):
    """The input's chunks of this shard, with their texts; `seen["rows"]` counts every row
    read, this shard's or not. The file is opened, and its columns checked, before this
    returns; every later chunk is checked too (a JSONL line may lack a key)."""
    from bertclf.tables import read_table_chunks, require_columns

    columns = {
        "--text-column": args.text_column,
        "--text-pair-column": args.text_pair_column,
        "--id-column": args.id_column,
    }
    chunks = read_table_chunks(args.input, args.chunk_rows, [c for c in columns.values() if c])
    first = next(chunks, None)
    if first is not None:
        require_columns(first, args.input, columns)

    def selected():
        for number, chunk in enumerate(
            itertools.chain([first] if first is not None else [], chunks)
        ):
            require_columns(chunk, args.input, columns)
            if seen is not None:
                seen["rows"] += len(chunk)
            if number % shards == shard:
                yield chunk, *input_texts(args, chunk)

    return selected()


def check_output_path(output: str, input_path: str | None = None) -> None:
    """A path the user names is never a directory that we replace, nor the input itself (the
    output keeps only some of its columns)."""
    from bertclf.files import same_file

    if Path(output).is_dir():
        raise BertclfError(f"{output}: is a directory; give a file name")
    if input_path is not None and Path(output).exists() and same_file(output, input_path):
        raise BertclfError(
            f"{output}: is the input file; give another name (the output keeps only the id, "
            "text and prediction columns)"
        )


def check_xlsx_output(args: argparse.Namespace, shard: int, shards: int, columns: list[str]):
    """Read the input once ahead to refuse, before any prediction, what XLSX cannot hold: the
    header, the texts and ids that go into the output, and its number of rows."""
    import pandas as pd

    from bertclf.tables import check_cells_fit

    check_cells_fit(pd.DataFrame(columns=columns), args.output)
    rows = 0
    for chunk, texts, pairs in read_shard(args, shard, shards):
        kept = pd.DataFrame({args.text_column: texts}, index=chunk.index)
        if pairs is not None:
            kept[args.text_pair_column] = pairs
        if args.id_column:
            kept[args.id_column] = chunk[args.id_column]
        check_cells_fit(kept, args.output, rows_before=rows)
        rows += len(kept)


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def probability(value: str) -> float:
    number = float(value)
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a number between 0 and 1")
    return number


def seconds_or_zero(value: str) -> float:
    """A number of seconds, 0 included."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds, 0 or more, not {value!r}")
    return seconds


def positive_number(value: str, unit: str = "a number") -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise argparse.ArgumentTypeError(f"expected {unit} above 0, not {value!r}")
    return number


def positive_seconds(value: str) -> float:
    return positive_number(value, "a number of seconds")


API_KEY_VARIABLE = "BERTCLF_API_KEY"


def api_key(path: str | None) -> str | None:
    """The server's API key: from --api-key-file, else $BERTCLF_API_KEY, else none. One line
    naming the file or the variable for a key that is empty or not one printable word."""
    if path is not None:
        source = path
        try:
            key = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise BertclfError(f"--api-key-file {path}: cannot read it ({error})") from None
    elif os.environ.get(API_KEY_VARIABLE) is not None:
        source, key = f"${API_KEY_VARIABLE}", os.environ[API_KEY_VARIABLE].strip()
    else:
        return None
    if not re.fullmatch(r"[\x21-\x7e]+", key):  # it goes in an HTTP header
        raise BertclfError(
            f"{source}: the API key is empty or not one word of printable ASCII characters"
        )
    return key


def serve(args: argparse.Namespace) -> None:
    from bertclf.serve import ExplainLimits, Limits, serve

    limits = Limits(
        max_texts=args.max_texts,
        max_chars=args.max_chars,
        max_body_bytes=args.max_body_bytes,
        max_batch_texts=args.max_batch_texts,
        max_request_chars=args.max_request_chars,
        max_queue_texts=args.max_queue_texts,
        request_timeout=args.request_timeout,
        read_timeout=args.read_timeout,
        write_timeout=args.write_timeout,
        limit_concurrency=args.limit_concurrency,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
    )
    allowed_hosts = args.allowed_hosts.split(",") if args.allowed_hosts else None
    serve(
        Path(args.model),
        args.host,
        args.port,
        limits,
        allowed_hosts,
        args.expect_sha256,
        args.runtime,
        args.precision,
        args.access_log,
        args.model_name,
        api_key(args.api_key_file),
        args.drain_seconds,
        ExplainLimits(args.explain_max_texts, args.explain_max_chars, args.explain_steps)
        if args.explain
        else None,
    )


def parse_shard(value: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    try:
        shard, shards = (int(x) for x in value.split("/"))
    except ValueError:
        shard, shards = -1, 0
    if not 0 <= shard < shards:
        raise BertclfError(f"--shard {value}: expected I/N with 0 <= I < N, such as 0/4")
    return shard, shards


def evaluate(args: argparse.Namespace) -> None:
    from bertclf.files import write_json
    from bertclf.package_reader import open_package
    from bertclf.tables import read_table, require_columns

    if args.output:
        check_output_path(args.output, args.input)
    columns = {
        "--text-column": args.text_column,
        "--text-pair-column": args.text_pair_column,
        "--label-column": args.label_column,
    }
    table = read_table(args.input, columns=[c for c in columns.values() if c])
    require_columns(table, args.input, columns)
    texts, pairs = input_texts(args, table)
    with open_package(args.model, args.expect_sha256) as package:
        label_map = package.label_map
        y_true = true_labels(args, table, label_map)
        classifier = load_package(args, package)
        check_pair_option(args, classifier)

    from bertclf.metrics import metrics_of  # scikit-learn: after the input is checked

    encoded = classifier.encode(texts, pairs)  # once: for the predictions and the lengths
    probabilities = classifier.predict_encoded(encoded, args.batch_size, progress=True)
    answers, scoring = classifier.preprocessor, metrics_of(classifier.task.name)
    metrics = scoring.split(
        y_true,
        probabilities,
        answers.decide(probabilities),
        list(classifier.classes_),
        encoded.long(classifier.tokenize.max_length),
        answers.thresholds,
    )
    if args.output:
        write_json(args.output, metrics)
    for key in scoring.headline_keys:
        print(f"{key:>16}: {metrics[key]:.4f}" if key != "n" else f"{key:>16}: {metrics[key]}")


def true_labels(args: argparse.Namespace, table, label_map):
    """The label column of `bertclf evaluate`'s input, encoded as the package's label map
    encodes (multi-label: a 0/1 column per label); an unknown label names its row."""
    from bertclf.tasks import task_of

    values, column = table[args.label_column], args.label_column
    try:
        return task_of(label_map).column_targets(values, args.input, column, args.label_separator)
    except BertclfError as error:
        message = str(error)
        raise BertclfError(
            message if message.startswith(args.input) else f"{args.input}: {message}"
        ) from None


def metrics(args: argparse.Namespace) -> None:
    from bertclf.files import read_json
    from bertclf.report import headline_table

    for path in (args.metrics, args.baseline):
        if not Path(path).is_file():
            raise BertclfError(f"{path}: not found; run `dvc repro` first")
    print(headline_table(read_json(args.metrics), read_json(args.baseline)))


def experiments(args: argparse.Namespace) -> None:
    import dvc.api
    import pandas as pd
    from dvc.exceptions import DvcException

    from bertclf.config import load_params
    from bertclf.experiments import experiments_table

    try:
        rows = dvc.api.exp_show()
    except DvcException as error:
        raise BertclfError(f"dvc exp show: {' '.join(str(error).split())}") from None
    table = experiments_table(rows, set(load_params()))
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.to_string(index=False, na_rep="-"))


def tune(args: argparse.Namespace) -> None:
    from bertclf.tune import tune as run_study

    summary = run_study(
        args.space, args.trials, args.timeout, args.jobs, args.storage, args.worker_id
    )
    print(
        f"study {args.space}: {summary['trials']} trials, {summary['complete']} complete, "
        f"{summary['pruned']} pruned; best: trial {summary['best_trial']}, validation loss "
        f"{summary['best_val_loss']:.4f}, {summary['best_params']}"
    )
    print("wrote conf/train/tuned.yaml and conf/head/tuned.yaml; reproduce it through the DAG:")
    if summary["params_differ_from_defaults"]:
        print(
            "(params.yaml differs from conf/'s defaults in "
            f"{', '.join(summary['params_differ_from_defaults'])}: add the overrides you "
            "composed it with)"
        )
    print(summary["command"])


def params(args: argparse.Namespace) -> None:
    from bertclf.config import compose_params

    if not Path(args.config_dir).is_dir():
        raise BertclfError(f"{args.config_dir}: config directory not found")
    compose_params(args.output, args.overrides, args.config_dir)
    print(f"composed {args.config_dir}/ into {args.output}")


def add_package_options(p: argparse.ArgumentParser) -> None:
    """--expect-sha256, --runtime and --precision: how the package is loaded."""
    from bertclf.choices import PRECISION_CHOICES, RUNTIMES

    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="what runs the model (default auto: OpenVINO when the package has it, else "
        "TensorFlow)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="OpenVINO's precision (default auto: bf16 on CPUs with native bfloat16, else f32; "
        "int8 only when asked)",
    )
    p.add_argument(
        "--expect-sha256",
        default=None,
        metavar="DIGEST",
        help="refuse the package unless its manifest.json has this sha256 (as its builder "
        "published it; default: $BERTCLF_PACKAGE_SHA256)",
    )


def parser() -> argparse.ArgumentParser:
    from bertclf.choices import ATTRIBUTION_BASELINES, ATTRIBUTION_STEPS

    root = argparse.ArgumentParser(prog="bertclf", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("predict", help="predict labels for a table of texts")
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--input", required=True, help="CSV, TSV, XLSX, Parquet or JSONL")
    p.add_argument("--output", required=True, help="output table; format by extension")
    p.add_argument("--text-column", default="text")
    p.add_argument(
        "--text-pair-column",
        default=None,
        help="a pair model's second text of each example (kept in the output)",
    )
    p.add_argument("--id-column", default=None, help="kept in the output")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument(
        "--chunk-rows", type=positive_int, default=1_000, help="rows read (and counted) at a time"
    )
    p.add_argument(
        "--shard",
        default="0/1",
        help="I/N: predict every N-th chunk from chunk I (I from 0), one of N parallel jobs",
    )
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help="add top_labels and top_probabilities: the K most probable, as JSON lists",
    )
    p.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="multi-label: one threshold for every label instead of the package's own",
    )
    p.add_argument(
        "--label-separator",
        default="|",
        help="multi-label: joins a text's labels in CSV, TSV and XLSX cells (default |)",
    )
    p.add_argument(
        "--spreadsheet-safe",
        action="store_true",
        help="CSV/TSV: prefix ' to cells starting with = + - @ (a spreadsheet would run them "
        "as formulas); this changes those texts",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process streams the file; ray: Ray Data reads --input (a folder or "
        "glob of Parquet or CSV files) and writes Parquet partitions into the new folder "
        "--output (pip install 'bertclf[ray]')",
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        default=1,
        help="--engine ray: actors scoring at once, each with the package loaded once",
    )
    p.add_argument(
        "--cpus-per-actor",
        type=positive_number,
        default=1.0,
        help="--engine ray: the CPUs Ray reserves for each actor (a fraction such as 0.5 "
        "shares one)",
    )
    add_package_options(p)
    p.set_defaults(run=predict)

    p = commands.add_parser(
        "explain", help="token attributions of each text's answer: an HTML page or JSON Lines"
    )
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--input", required=True, help="CSV, TSV, XLSX, Parquet or JSONL")
    p.add_argument("--output", required=True, help="explained.html (a page) or .jsonl")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default=None, help="a pair model's second text")
    p.add_argument("--id-column", default=None, help="shown beside each text")
    p.add_argument(
        "--label",
        default=None,
        help="explain this class for every text (default: the predicted class; multi-label: "
        "each predicted label)",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=ATTRIBUTION_STEPS,
        help="integrated gradients' points between baseline and text (fewer: faster, coarser)",
    )
    p.add_argument(
        "--baseline",
        choices=ATTRIBUTION_BASELINES,
        default="pad",
        help="what each token is compared with: [PAD]'s embedding, or zeros",
    )
    p.add_argument("--max-rows", type=positive_int, default=1_000, help="refuse longer inputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--expect-sha256", default=None, metavar="DIGEST",
                   help="refuse the package unless its manifest.json has this sha256")  # fmt: skip
    p.set_defaults(run=explain, chunk_rows=1_000)

    p = commands.add_parser(
        "serve",
        help="serve a package over HTTP (POST /v1/predict, the Open Inference Protocol under /v2)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,  # --help shows every default
    )
    p.add_argument(
        "--model",
        required=True,
        default=argparse.SUPPRESS,  # required: no default to show
        help="package directory (models/package)",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port to listen on")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also serve POST /v1/explain (token attributions, on TensorFlow: loads the "
        "SavedModel's functions beside the runtime, and says what that costs in memory)",
    )
    p.add_argument("--explain-max-texts", type=positive_int, default=4,
                   help="/v1/explain: texts a request")  # fmt: skip
    p.add_argument("--explain-max-chars", type=positive_int, default=2_000,
                   help="/v1/explain: characters a text")  # fmt: skip
    p.add_argument("--explain-steps", type=positive_int, default=ATTRIBUTION_STEPS,
                   help="/v1/explain: integrated gradients' steps, the default and the most a "
                   "request may ask")  # fmt: skip
    p.add_argument("--max-texts", type=positive_int, default=256, help="texts a request")
    p.add_argument("--max-chars", type=positive_int, default=10_000, help="characters a text")
    p.add_argument("--max-body-bytes", type=positive_int, default=1_000_000, help="bytes a body")
    p.add_argument(
        "--max-batch-texts",
        type=positive_int,
        default=16,
        help="texts in one model call, shared among the requests waiting (1: no merging)",
    )
    p.add_argument(
        "--max-request-chars",
        type=positive_int,
        default=200_000,
        help="characters of all a request's texts together: its cost (more: 413)",
    )
    p.add_argument(
        "--max-queue-texts",
        type=positive_int,
        default=1_024,
        help="texts waiting for the model (more: 503 with Retry-After)",
    )
    p.add_argument(
        "--request-timeout",
        type=positive_seconds,
        default=30.0,
        help="seconds from a request's arrival to its answer (more: 503)",
    )
    p.add_argument(
        "--read-timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds a client has to send a request's headers and body (more: 408, closed)",
    )
    p.add_argument(
        "--write-timeout",
        type=positive_seconds,
        default=10.0,
        help="seconds a client may leave an answer unread once the socket is full (closed)",
    )
    p.add_argument(
        "--limit-concurrency",
        type=positive_int,
        default=200,
        help="requests in flight at once (more: 503); idle keep-alive connections do not count",
    )
    p.add_argument(
        "--timeout-graceful-shutdown",
        type=positive_seconds,
        default=10.0,
        help="seconds open requests get after SIGTERM",
    )
    p.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a line per request on stdout (uvicorn's access log)",
    )
    p.add_argument(
        "--allowed-hosts",
        default=None,
        help="comma-separated Host names the server answers (e.g. localhost,127.0.0.1)",
    )
    p.add_argument(
        "--drain-seconds",
        type=seconds_or_zero,
        default=5.0,
        help="after SIGTERM, seconds the server is unready but still serves, before the "
        "graceful shutdown (0: none)",
    )
    p.add_argument(
        "--model-name",
        default=None,
        help="the model's name in the /v2 routes (default: the package folder's name)",
    )
    p.add_argument(
        "--api-key-file",
        default=None,
        metavar="PATH",
        help="a file holding the API key that every route but the probes then needs as "
        f"Authorization: Bearer <key> (default: ${API_KEY_VARIABLE}, else none)",
    )
    add_package_options(p)
    p.set_defaults(run=serve)

    p = commands.add_parser("evaluate", help="score a labelled table with a package")
    p.add_argument("--model", required=True, help="package directory (models/package)")
    p.add_argument("--input", required=True, help="CSV, TSV, XLSX, Parquet or JSONL")
    p.add_argument("--text-column", default="text")
    p.add_argument("--text-pair-column", default=None, help="a pair model's second texts")
    p.add_argument("--label-column", default="label")
    p.add_argument(
        "--label-separator",
        default="|",
        help="multi-label: what joins a text's labels in CSV, TSV and XLSX cells (default |)",
    )
    p.add_argument("--output", default=None, help="write every metric to this JSON file")
    p.add_argument("--batch-size", type=positive_int, default=64)
    add_package_options(p)
    p.set_defaults(run=evaluate)

    p = commands.add_parser("metrics", help="the headline test metrics beside the baseline's")
    p.add_argument("--metrics", default="reports/metrics.json")
    p.add_argument("--baseline", default="reports/baseline.json")
    p.set_defaults(run=metrics)

    p = commands.add_parser(
        "experiments",
        help="DVC's experiments: headline metrics and the params that differ (dvc exp show "
        "lists every column)",
    )
    p.set_defaults(run=experiments)

    p = commands.add_parser(
        "tune", help="search hyperparameters (Optuna, pruning); every trial a DVC experiment"
    )
    p.add_argument("--space", default="default", help="conf/tune/SPACE.yaml (default: default)")
    p.add_argument("--trials", type=positive_int, default=20, help="finished trials in all")
    p.add_argument("--timeout", type=positive_seconds, default=None, help="seconds a process")
    p.add_argument("--jobs", type=positive_int, default=1, help="processes sharing the study")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the study's Optuna storage, shared by every host that names it: "
        "postgresql+psycopg://user:password@host/db, sqlite:///PATH or journal:PATH "
        "(default: .tune/SPACE.db)",
    )
    p.add_argument(
        "--worker-id",
        default=None,
        help="what seeds this host's draws in a shared study (default: host name and process id)",
    )
    p.set_defaults(run=tune)

    p = commands.add_parser("params", help="compose conf/ into params.yaml (as dvc exp run does)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=tiny")
    p.add_argument("--config-dir", default="conf")
    p.add_argument("--output", default="params.yaml")
    p.set_defaults(run=params)
    return root


@exits_cleanly
def main() -> None:
    args = parser().parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
