"""What checking a package costs at load: the manifest's checksums and the scan of the
SavedModel's ops, against the whole `Classifier.load` on TensorFlow (which scans the ops) and on
the default runtime (`auto`: OpenVINO, no scan), on one package (models/package after
`make repro`). Writes reports/package_load.json; nothing is asserted.

    python benchmarks/package_load.py [--model DIR]
"""

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports/package_load.json"
sys.path.insert(0, str(ROOT / "tools"))
from harness import machine  # noqa: E402


def seconds(function, repeats: int = 3) -> float:
    """The fastest of `repeats` runs (the others paid for a cold disk cache or noise)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(ROOT / "models/package"))
    package = Path(parser.parse_args().model)

    from bertclf import Classifier
    from bertclf.package import check_saved_model_ops, verify_bundle

    scan = seconds(lambda: check_saved_model_ops(package / "saved_model"))
    manifest = seconds(lambda: verify_bundle(package))
    load = seconds(lambda: Classifier.load(package, runtime="tensorflow"))
    default_load = seconds(lambda: Classifier.load(package))
    results = {
        "machine": machine(),
        "package_mb": round(sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) / 1e6),
        "op_scan_s": round(scan, 3),
        "manifest_check_s": round(manifest, 3),
        "classifier_load_s": round(load, 3),
        "op_scan_share_of_load": round(scan / load, 3),
        "default_runtime": Classifier.load(package).describe(),
        "default_classifier_load_s": round(default_load, 3),
    }
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"op scan {scan:.3f} s, manifest {manifest:.3f} s, whole load on TensorFlow {load:.3f} s: "
        f"the scan is {scan / load:.1%} of it; load by default ({results['default_runtime']}) "
        f"{default_load:.3f} s; wrote {OUT}"
    )


if __name__ == "__main__":
    main()
