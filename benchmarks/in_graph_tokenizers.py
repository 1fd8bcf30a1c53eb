"""Could a RoBERTa, XLM-RoBERTa or ALBERT package tokenize raw text in its graph? Each family's
in-graph candidate against its Hugging Face tokenizer (the one training uses), id for id, on
texts the tiny tokenizers did not see and on the package check's Unicode stress texts.

    python benchmarks/in_graph_tokenizers.py --out docs/results/in_graph_tokenizers.json

The candidates are the TensorFlow ops that exist for each tokenizer: KerasHub's
`BytePairTokenizer` for RoBERTa's byte-level BPE, and tensorflow-text's `SentencepieceTokenizer`
for the SentencePiece families (XLM-RoBERTa's ids shifted to fairseq's; ALBERT's text first
NFKD-normalised, stripped of marks and lowercased in the graph, as its Hugging Face tokenizer
does). Each runs inside a `tf.function`, as in a SavedModel. The package check accepts a
family only if every text gets the same ids (`Family.raw_text`); this records how far each is.
Writes one JSON file; nothing is asserted.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_text as tf_text  # noqa: E402
from harness import NEWS_SAMPLE, SHARED, machine  # noqa: E402
from helpers import write_tiny_checkpoint  # noqa: E402

from bertclf.config import ModelConfig  # noqa: E402
from bertclf.export import STRESS_TEXTS  # noqa: E402
from bertclf.model import resolve_pretrained  # noqa: E402
from bertclf.tokenization import load_tokenizer  # noqa: E402

# texts where an in-graph candidate was seen to part from its Hugging Face tokenizer: KerasHub's
# BytePairTokenizer marks spaces with "\u096c" (Devanagari six) and drops tokens that are only
# that character; and a NUL
EXTRA_TEXTS = ["\u0968\u096c \u0930\u0941\u092a\u092f\u0947", "a\u096cb", "x \x00y"]


def held_out_texts() -> list[str]:
    """Texts the tiny tokenizers were not trained on: the Reuters fixture past its first 600
    rows (which they were trained on), and the news sample's."""
    lines = (SHARED / "fixtures" / "reuters21578_modapte_test.jsonl").read_text(encoding="utf-8")
    reuters = [json.loads(line)["text"] for line in lines.splitlines()[600:1600]]
    return [*reuters, *pd.read_excel(NEWS_SAMPLE)["EXCERPT"].astype(str).tolist()]


def roberta_in_graph(folder: Path):
    import keras_hub

    bpe = keras_hub.tokenizers.BytePairTokenizer(
        vocabulary=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), dtype="int32"
    )
    return lambda text: bpe(text)


def sentencepiece_in_graph(model: Path, albert: bool):
    spm = tf_text.SentencepieceTokenizer(model=model.read_bytes(), out_type=tf.int32)

    def tokenize(text):
        if albert:  # the Hugging Face ALBERT's normalisation before the model's own
            text = tf.strings.regex_replace(text, "``|''", '"')
            text = tf_text.normalize_utf8(text, "NFKD")
            text = tf.strings.regex_replace(text, r"\p{M}", "")
            text = tf.strings.lower(text, encoding="utf-8")
            return spm.tokenize(text)
        ids = spm.tokenize(text)  # fairseq's: <unk> (0) is 3, every other piece one up
        return tf.ragged.map_flat_values(lambda i: tf.where(i == 0, 3, i + 1), ids)

    return tokenize


def compare(tokenizer, in_graph, texts: list[str]) -> list[int]:
    """The indices of the texts whose in-graph ids differ from the tokenizer's."""
    run = tf.function(in_graph, input_signature=[tf.TensorSpec([None], tf.string)])
    differ = []
    for start in range(0, len(texts), 64):
        batch = texts[start : start + 64]
        graph = run(tf.constant(batch)).to_list()
        for i, (text, ids) in enumerate(zip(batch, graph, strict=True)):
            if tokenizer.encode(text, add_special_tokens=False).ids != ids:
                differ.append(start + i)
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    texts = held_out_texts()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for family in ("roberta", "xlm-roberta", "albert"):
            folder = write_tiny_checkpoint(scratch / family, family, prefixed=False)
            copy = scratch / f"{family}-pretrained"
            resolve_pretrained(ModelConfig(family, str(folder), None), copy, 0)
            tokenizer = load_tokenizer(copy)
            if family == "roberta":
                in_graph, op = roberta_in_graph(folder), "keras_hub BytePairTokenizer"
            else:
                model = "spiece.model" if family == "albert" else "sentencepiece.bpe.model"
                in_graph = sentencepiece_in_graph(folder / model, family == "albert")
                op = "tensorflow_text SentencepieceTokenizer"
            held_out = compare(tokenizer, in_graph, texts)
            stress = compare(tokenizer, in_graph, STRESS_TEXTS)
            extra = compare(tokenizer, in_graph, EXTRA_TEXTS)
            results.append(
                {
                    "family": family,
                    "in_graph": op,
                    "held_out_texts": len(texts),
                    "held_out_with_other_ids": len(held_out),
                    "stress_texts": len(STRESS_TEXTS),
                    "stress_with_other_ids": len(stress),
                    "stress_texts_differing": [STRESS_TEXTS[i][:60] for i in stress],
                    "extra_texts_differing": [EXTRA_TEXTS[i] for i in extra],
                }
            )
            print(json.dumps(results[-1], ensure_ascii=False))
    record = {"machine": machine(), "results": results}
    args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
