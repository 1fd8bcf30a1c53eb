"""Is each family's checkpoint wired right? Its tiny checkpoint (the tests' own, prefixed and
bare weight names) through bertclf's encoder against Hugging Face transformers' PyTorch model
on the same ids. The only evidence that the weight mapping is right: KerasHub's converters'
own tests need the hub.

    python benchmarks/encoder_reference.py --reference-python /tmp/ref/bin/python \\
        --out docs/results/encoder_reference.json

PyTorch and transformers never enter the lock: `--reference-python` is a scratch virtual
environment's interpreter with `torch` (the CPU build) and `transformers` installed. The texts
are the tokenizer's ids of a few sentences, padded, with an attention mask; the difference is
the largest absolute one of the last hidden states over the real (unpadded) tokens. Writes
one JSON file; nothing is asserted.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))

from harness import machine  # noqa: E402
from helpers import write_tiny_checkpoint  # noqa: E402

from bertclf.config import ModelConfig  # noqa: E402
from bertclf.model import FAMILIES, load_backbone, resolve_pretrained  # noqa: E402
from bertclf.tokenization import load_tokenizer  # noqa: E402

TEXTS = [
    "The striker scored twice in the final minutes.",
    "Stocks rallied as the central bank held rates steady, and bonds fell.",
    "Überraschung: naïve café",
]

REFERENCE = """
import json, sys
import numpy as np, torch
from transformers import AutoModel
folder, ids, mask = sys.argv[1], np.load(sys.argv[2]), np.load(sys.argv[3])
model = AutoModel.from_pretrained(folder).eval()
with torch.no_grad():
    out = model(input_ids=torch.tensor(ids, dtype=torch.long),
                attention_mask=torch.tensor(mask, dtype=torch.long)).last_hidden_state
np.save(sys.argv[4], out.numpy())
import transformers
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__,
                  "class": type(model).__name__}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-python", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for family in FAMILIES:
            if family == "bert":  # the tests write none: its tiny one is model.random_init
                continue
            for prefixed in (True, False):
                folder = write_tiny_checkpoint(
                    scratch / f"{family}-{prefixed}", family, prefixed=prefixed
                )
                # the pretrained stage's copy: a tokenizer.json where the checkpoint has none
                copy = scratch / f"{family}-{prefixed}-pretrained"
                resolve_pretrained(ModelConfig(family, str(folder), None), copy, 0)
                encodings = [load_tokenizer(copy).encode(text) for text in TEXTS]
                length = max(len(e.ids) for e in encodings)
                ids = np.zeros((len(TEXTS), length), dtype=np.int32)
                for row, encoding in enumerate(encodings):
                    ids[row, : len(encoding.ids)] = encoding.ids
                mask = (np.arange(length)[None] < [[len(e.ids)] for e in encodings]).astype("int32")
                inputs = {"token_ids": ids, "padding_mask": mask}
                if FAMILIES[family].segments:  # one text: segment 0 throughout
                    inputs["segment_ids"] = np.zeros_like(ids)
                ours = load_backbone(folder)(inputs)
                ours = np.asarray(ours["sequence_output"] if isinstance(ours, dict) else ours)
                np.save(scratch / "ids.npy", ids)
                np.save(scratch / "mask.npy", mask)
                reference = subprocess.run(
                    [args.reference_python, "-c", REFERENCE, str(folder), str(scratch / "ids.npy"),
                     str(scratch / "mask.npy"), str(scratch / "theirs.npy")],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
                theirs = np.load(scratch / "theirs.npy")
                difference = np.abs(ours - theirs)[mask.astype(bool)]
                results.append(
                    {
                        "family": family,
                        "weight_names": "prefixed" if prefixed else "bare",
                        "reference": json.loads(reference.stdout.strip().splitlines()[-1]),
                        "tokens": int(mask.sum()),
                        "hidden_size": int(ours.shape[-1]),
                        "max_abs_difference": float(difference.max()),
                        "mean_abs_reference": float(np.abs(theirs)[mask.astype(bool)].mean()),
                    }
                )
                print(json.dumps(results[-1]))
    args.out.write_text(
        json.dumps({"machine": machine(), "texts": TEXTS, "results": results}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
