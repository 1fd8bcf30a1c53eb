"""`bertclf predict --engine ray`: batch scoring on Ray Data (`pip install 'bertclf[ray]'`).

Ray Data reads the input files (Parquet or CSV: a folder, a glob, or one file), splits them
into blocks, and runs `Scorer`, a callable class that loads the package once in each of
`--concurrency` actors, on batches of `--chunk-rows` rows; the rows it answers are those
`bertclf predict` writes (`batch_prediction.prediction_frame`), as Parquet partitions in a new
folder. The folder appears only when every partition is written: a folder that exists is never
written into, nor removed. `ray.init()` joins the cluster RAY_ADDRESS names, or starts one on
this machine for the run.
"""

import argparse
import glob
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from bertclf.batch_prediction import check_pair_option, input_texts, prediction_frame
from bertclf.errors import DEBUG_VARIABLE, BertclfError

READERS = {".parquet": "read_parquet", ".csv": "read_csv"}


class Scorer:
    """Ray Data's callable class: the package loaded once per actor, then batch after batch."""

    def __init__(self, args: argparse.Namespace):
        from bertclf.classifier import Classifier

        self.args = args
        self.classifier = Classifier.load(
            args.model,
            batch_size=args.batch_size,
            expect_sha256=args.expect_sha256,
            runtime=args.runtime,
            precision=args.precision,
        )
        check_pair_option(args, self.classifier)

    def __call__(self, batch):
        texts, pairs = input_texts(self.args, batch.set_axis(self.row_names(batch)))
        out = prediction_frame(self.args, self.classifier, batch, texts, ".parquet", pairs)
        return out.reset_index(drop=True)

    def row_names(self, batch) -> list[str]:
        """Names of the batch's rows for messages: a batch's position says nothing about the
        file, so a row is named by its id (a row, without --id-column)."""
        column = self.args.id_column
        if not column:
            return ["a row (give --id-column to name it)"] * len(batch)
        return [f"the row with {column} {value!r}" for value in batch[column]]


def input_files(pattern: str) -> tuple[list[str], str]:
    """The files `--input` names (a folder's files, a glob's matches, or one file), sorted, and
    their format; one line naming the input when there are none or their formats differ."""
    path = Path(pattern)
    if path.is_dir():
        files = sorted(str(f) for f in path.iterdir() if f.is_file() and f.suffix in READERS)
    else:
        files = sorted(f for f in glob.glob(pattern) if Path(f).is_file())
    if not files:
        raise BertclfError(f"{pattern}: no Parquet or CSV files found")
    suffixes = {Path(f).suffix.lower() for f in files}
    if len(suffixes) != 1 or not suffixes <= set(READERS):
        raise BertclfError(
            f"{pattern}: the Ray engine reads Parquet or CSV files of one format; found "
            f"{', '.join(sorted(suffixes))}"
        )
    return files, suffixes.pop()


def predict_on_ray(args: argparse.Namespace) -> int:
    """Score `args.input` into the new folder `args.output`; the rows written."""
    import ray

    files, suffix = input_files(args.input)
    check_package(args)
    output = Path(args.output)
    if output.exists() or output.is_symlink():
        raise BertclfError(
            f"{output}: exists; the Ray engine writes its partitions to a new folder"
        )
    if not output.parent.is_dir():
        raise BertclfError(f"{output.parent}: folder not found")
    started = not ray.is_initialized()
    if started:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ core: no notices
        ray.init(logging_level="ERROR", log_to_driver=False, include_dashboard=False)
    try:
        if started and not os.environ.get("RAY_ADDRESS"):  # a cluster one runs is one's to size
            check_local_cpus(args, ray.cluster_resources().get("CPU", 0))
        quiet_ray(ray.data.DataContext.get_current(), args.quiet)
        return write_partitions(args, files, suffix, output)
    finally:
        if started:
            ray.shutdown()


def write_partitions(args: argparse.Namespace, files: list[str], suffix: str, output: Path) -> int:
    """Score the files into a hidden folder beside `output`, renamed to it once complete; the
    rows written."""
    import pyarrow.parquet as pq
    import ray

    scratch = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        dataset = getattr(ray.data, READERS[suffix])(files)
        needed = [c for c in (args.id_column, args.text_column, args.text_pair_column) if c]
        missing = [c for c in needed if c not in dataset.schema().names]
        if missing:
            raise BertclfError(f"{args.input}: no column {missing[0]!r} in {files[0]}")
        scored = dataset.map_batches(
            Scorer,
            fn_constructor_args=(args,),
            batch_size=args.chunk_rows,
            batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=args.concurrency),
            num_cpus=args.cpus_per_actor,
        )
        scored.write_parquet(str(scratch))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in scratch.glob("*.parquet"))
        if output.exists():  # made while we wrote: never replace it
            raise BertclfError(f"{output}: appeared during the run; the partitions are not moved")
        os.rename(scratch, output)
        return rows
    except BaseException as error:
        shutil.rmtree(scratch, ignore_errors=True)
        ours = _bertclf_error(error)
        if ours is not None:  # an actor's line, without the retry count Ray Data appends
            raise BertclfError(str(ours).splitlines()[0]) from None
        raise


def check_package(args: argparse.Namespace) -> None:
    """What every actor would refuse on loading the package, refused once here before Ray
    starts: a package that fails its checks, the wrong pair option, a runtime or precision the
    package does not offer."""
    from bertclf.hardware import cpu, native_bfloat16
    from bertclf.package_reader import open_package
    from bertclf.runtime import choose

    with open_package(args.model, args.expect_sha256) as package:
        check_pair_option(args, package)
        bfloat16 = native_bfloat16(cpu()["flags"])
        choose(args.runtime, args.precision, list(package.offered), bfloat16, package.path)


def quiet_ray(context, quiet: bool) -> None:
    """An actor's BertclfError reaches the driver as itself (the cause of Ray's RayTaskError), and
    Ray Data's own log lines stay in its log files: a bad row is one line, as in the local
    engine. Its progress lines are shown unless --quiet."""
    context.raise_original_map_exception = True
    context.enable_progress_bars = not quiet
    if os.environ.get(DEBUG_VARIABLE, "") in ("", "0"):
        for handler in logging.getLogger("ray.data").handlers:
            if isinstance(handler, logging.StreamHandler):  # the console, not the log file
                handler.setLevel(logging.CRITICAL)


def check_local_cpus(args: argparse.Namespace, cpus: float) -> None:
    """On the cluster this run starts, the actors leave a CPU to Ray Data's listing, reading
    and writing tasks: without one they wait for each other for ever."""
    asked = args.concurrency * args.cpus_per_actor
    if asked > cpus - 1:
        raise BertclfError(
            f"--concurrency {args.concurrency} x --cpus-per-actor {args.cpus_per_actor:g} asks "
            f"for {asked:g} of this machine's {cpus:g} CPUs, and Ray Data needs one more to read "
            "and write; lower either (fractions such as 0.5 are allowed)"
        )


def _bertclf_error(error: BaseException) -> BertclfError | None:
    """The BertclfError an actor raised, if that is what Ray's exception carries: a batch's
    RayTaskError holds it as its cause (its own text is the actor's traceback), while an
    actor that failed to start (a package path missing on a worker node) reaches the driver as
    an ActorDiedError that keeps only the traceback's text, whose last line is ours."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BertclfError):
        return cause
    if isinstance(error, BertclfError):
        return error
    found = re.findall(rf"{BertclfError.__module__}\.BertclfError: (.+)", str(error))
    return BertclfError(found[-1]) if found else None
