"""Tokenize every split once into an unpadded token cache (Parquet list<int32>).

(Not named tokenize.py: a script of that name would shadow the standard library module.)
"""

import pandas as pd

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.labels import LabelMap
from bertclf.paths import LABELS, PREPARED, PRETRAINED, SPLITS, TOKENIZE_REPORT, TOKENIZED
from bertclf.tasks import task_of
from bertclf.tokenization import encode_split, load_tokenizer, write_encoded_cache


@exits_cleanly
def main() -> None:
    tokenize = load_section("tokenize")
    tokenizer = load_tokenizer(PRETRAINED)
    task = task_of(LabelMap.load(LABELS))

    report = {"max_length": tokenize.max_length, "long_text": tokenize.long_text}
    pairs = "text_pair" in pd.read_parquet(PREPARED / "train.parquet").columns
    tokenize.check_pairs(pairs)  # before any work: head_tail and chunks cut one text
    report["text_pairs"] = pairs
    with atomic_path(TOKENIZED, replace_directory=True) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            frame = pd.read_parquet(PREPARED / f"{name}.parquet")
            encoded = encode_split(tokenizer, frame, tokenize)
            n_long = encoded.long(tokenize.max_length).sum()
            label_ids = task.targets(frame)
            write_encoded_cache(tmp / f"{name}.parquet", frame["id"].tolist(), encoded, label_ids)
            report[name] = {
                "texts": len(frame),
                "long_texts": int(n_long),  # pairs: pairs cut, longer text first
                "truncated": 0 if tokenize.long_text == "chunks" else int(n_long),
                "sequences": len(encoded.sequences),
                "mean_tokens": round(float(encoded.lengths.mean()), 1),
                "max_tokens": int(encoded.lengths.max()),
            }
    write_json(TOKENIZE_REPORT, report)
    print(f"tokenize: {report}")


if __name__ == "__main__":
    main()
