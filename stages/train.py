"""Fit encoder plus head on the token cache by the learner's method (learner.method; auto
chooses and says why): fine-tuning keeps the best weights by validation loss, the frozen and
contrastive methods fit a linear head on pooled vectors.

Under train.distribution=multi_worker every worker runs this script with its own TF_CONFIG;
only the chief writes the stage's outputs, the others write to a temporary directory.
"""

import shutil
import tempfile
import time
from pathlib import Path

from bertclf.config import load_section
from bertclf.distribution import is_chief
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.paths import LABELS, PRETRAINED, REPORTS, TOKENIZED, TRAIN_LOGS, TRAINED

TRAIN_TIME = REPORTS / "train_time.json"  # only this stage writes it


@exits_cleanly
def main() -> None:
    train = load_section("train")
    head = load_section("head")
    learner = load_section("learner")
    tokenize = load_section("tokenize")
    seed = load_section("seed")
    monitor = load_section("task").early_stopping_monitor

    from dvclive import Live  # TensorFlow loads from here on, after the params are validated
    from dvclive.keras import DVCLiveCallback

    from bertclf.checkpoint import Checkpoint
    from bertclf.labels import LabelMap
    from bertclf.learners import FINETUNE, learn, log_fitted
    from bertclf.model import save_classifier
    from bertclf.tokenization import read_token_cache
    from bertclf.training import training_policy

    label_map = LabelMap.load(LABELS)
    if is_chief():
        out, live_dir, time_file = TRAINED, str(TRAIN_LOGS), TRAIN_TIME
    else:  # collectives need every worker to log and save, but only the chief's files count
        scratch = Path(tempfile.mkdtemp(prefix="bertclf-worker-"))
        out, live_dir = scratch / "trained", str(scratch / "live")
        time_file = scratch / "train_time.json"
    checkpoint = None  # multi_worker: one worker resuming alone would wait for its peers
    if train.distribution != "multi_worker":
        params = {
            "train": train,
            "head": head,
            "learner": learner,
            "tokenize": tokenize,
            "seed": seed,
            "monitor": monitor,
        }
        inputs = [PRETRAINED, LABELS, TOKENIZED, __file__]
        checkpoint = Checkpoint.for_run("train", params, inputs, snapshots=[TRAIN_LOGS])
        checkpoint.restore_snapshots()  # DVCLive's logs of the epochs already done
    resuming = checkpoint is not None and checkpoint.state is not None
    live = Live(live_dir, dvcyaml=None, save_dvc_exp=False, resume=resuming)
    if resuming:
        live.step = checkpoint.next_epoch
    first_epoch = checkpoint.next_epoch if resuming else 0
    start = time.perf_counter()
    train_cache = read_token_cache(TOKENIZED / "train.parquet")
    val_cache = read_token_cache(TOKENIZED / "val.parquet")
    learned = learn(
        PRETRAINED,
        label_map,
        train_cache,
        val_cache,
        train,
        head,
        tokenize,
        learner,
        seed,
        callbacks=[DVCLiveCallback(live=live)],
        checkpoint=checkpoint,
        monitor=monitor,
    )
    seconds = time.perf_counter() - start
    if learned.method != FINETUNE:  # no epochs: the fitted model's figures, as one step
        splits = {"train": train_cache, "eval": val_cache}
        log_fitted(live, learned, label_map, splits, train, tokenize)
        live.next_step()
        live.end()

    with atomic_path(out, replace_directory=True) as tmp:
        classes = list(label_map.classes)
        pairs = train_cache.pair_separator_id
        policy = training_policy(train.precision)
        save_classifier(
            learned.model,
            tmp,
            learned.encoder_config,
            learned.head,
            classes,
            tokenize,
            pairs,
            policy,
            learned.method,
        )
    # Wall clock of this run's fit (a resumed run counts from its first epoch), apart from
    # DVCLive's metrics so that those stay exactly repeatable.
    write_json(
        time_file,
        {
            "train_seconds": round(seconds, 1),
            "first_epoch": first_epoch,
            "learner": learned.method,
            "learner_reason": learned.reason,
        },
    )
    if out != TRAINED:
        shutil.rmtree(scratch)
    if checkpoint is not None:
        checkpoint.remove()
    print(
        f"train: saved {out}/ after {seconds:.0f} s of training in {policy} "
        f"(train.precision={train.precision}) by learner {learned.method}"
    )


if __name__ == "__main__":
    main()
