"""The packaged model: a self-contained, versioned bundle with a manifest of checksums.

Loading needs neither training code nor pickle. A package is a program all the same (its
SavedModel is a graph that TensorFlow runs): load packages only from sources you trust.
"""

import hashlib
import json
import os
import platform
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from bertclf import __version__
from bertclf.errors import BertclfError
from bertclf.files import sha256_file, write_json
from bertclf.layout import MANIFEST

# Formats 1 to 8 are no longer read (the policy below).
# 1: weights.h5 and model.json. 2: saved_model/ (raw text in, in-graph tokenization; and
# token ids in, which the Python API calls) and model.json. 3: calibration.json (the decision
# rule: multi-label thresholds), the task in model.json, and a multi-label SavedModel's
# `predicted` output. 4: the same files, the SavedModel built from KerasHub's BertBackbone on
# Keras 3 (its graph has ops earlier readers' allowlists lack, so they refuse it by version).
# 5: openvino/ (the token_ids function as OpenVINO models, f32 and int8, and checks.json: which
# precisions passed their check against TensorFlow, on which CPU). 6: calibration.json holds the
# temperature (`scaling`, `temperature`), which the SavedModel and OpenVINO models apply (format-5
# readers refuse a multi-label calibration.json with keys they do not know). 7: the SavedModel
# tokenizes through a character table read from the Hugging Face tokenizer, then
# FastWordpieceTokenizer, instead of FastBertTokenizer (new ops in its graph). 8: the classifier
# answers logits: `token_ids` (and the OpenVINO models) answer `logits` (temperature-scaled)
# beside `probabilities`, and the Python side pools a long text's windows from them. 9: tasks
# and inputs an 8 reader does not know: regression (`serving_default` answers `score`, labels.json
# holds the scores' summary) and text pairs (model.json's `pair_separator_id`; `serving_default`
# takes `text_pair` too, and the model computes segment ids from the ids). 10: the SavedModel
# exports `token_embeddings` and `from_token_embeddings`, what token attributions differentiate
# (a 9 package cannot explain). 11: encoder families beyond BERT (model.json's
# `encoder.model_type`, DistilBERT; a 10 reader would take any for BERT).
FORMAT_VERSION = 11
# The policy (docs/package.md): a bertclf reads the format it writes and the one before it; an
# older package is refused in one line and rebuilt with `dvc repro`.
READABLE_VERSIONS = (10, 11)
EXPECT_SHA256_VARIABLE = "BERTCLF_PACKAGE_SHA256"


def library_versions() -> dict[str, str]:
    from importlib.metadata import version

    names = ["tensorflow", "tensorflow-text", "keras", "keras-hub", "tokenizers", "numpy"]
    names += ["openvino", "nncf"]
    return {
        "python": platform.python_version(),
        "bertclf": __version__,
        **{name: version(name) for name in names},
    }


def write_manifest(bundle: Path) -> str:
    """Write manifest.json over every file of the bundle; return the manifest's sha256, which
    a user can check at load (`--expect-sha256`) once it reached them through a trusted channel."""
    files = sorted(p for p in bundle.rglob("*") if p.is_file())
    write_json(
        bundle / MANIFEST,
        {
            "format_version": FORMAT_VERSION,
            "files": {
                p.relative_to(bundle).as_posix(): sha256_file(p)
                for p in files
                if p != bundle / MANIFEST
            },
            "libraries": library_versions(),
        },
    )
    return sha256_file(bundle / MANIFEST)


def expected_digest(given: str | None) -> str | None:
    """The digest to check the manifest against: `given`, else BERTCLF_PACKAGE_SHA256, else
    None (no check). Given but empty or not 64 hex digits is refused: a deploy script whose
    variable is unset must fail closed, not load unchecked."""
    source = "--expect-sha256"
    if given is None:
        given, source = os.environ.get(EXPECT_SHA256_VARIABLE), EXPECT_SHA256_VARIABLE
    if given is None:
        return None
    digest = given.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise BertclfError(
            f"{source} is {given!r}: expected a sha256, 64 hexadecimal digits (leave it unset "
            "to load without this check)"
        )
    return digest


def read_manifest(bundle: Path, expect_sha256: str | None = None) -> dict:
    """The manifest, checked for shape; with `expect_sha256` (or BERTCLF_PACKAGE_SHA256), its
    digest against the one the user expects."""
    return read_manifest_bytes(bundle, expect_sha256)[0]


def read_manifest_bytes(bundle: Path, expect_sha256: str | None = None) -> tuple[dict, bytes]:
    """`read_manifest`, and the bytes it was parsed from (their sha256 is the package's
    digest)."""
    path = bundle / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise BertclfError(f"{bundle}: not a bertclf package (no {MANIFEST})")
    expect_sha256 = expected_digest(expect_sha256)
    raw = path.read_bytes()  # read once: the bytes hashed are the bytes parsed
    if expect_sha256 is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != expect_sha256.strip().lower():
            raise BertclfError(
                f"{path}: sha256 is {actual}, not the expected {expect_sha256.strip()} "
                f"(--expect-sha256 or {EXPECT_SHA256_VARIABLE}): not the package you were given"
            )
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, OSError) as error:
        raise BertclfError(f"{path}: not valid JSON ({error})") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()
    ):
        raise BertclfError(
            f"{path}: not a manifest (a JSON object whose 'files' maps names to sha256)"
        )
    version = manifest.get("format_version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        older = type(version) is int and version < READABLE_VERSIONS[0]
        raise BertclfError(
            f"{path}: format_version {version!r} is not one this bertclf ({__version__}) reads "
            f"({', '.join(map(str, READABLE_VERSIONS))})"
            + ("; rebuild the package with `dvc repro`" if older else "")
        )
    for name in files:
        if name.startswith("/") or ".." in name.split("/") or name == MANIFEST:
            raise BertclfError(f"{path}: lists {name!r}, which is not a file inside the package")
    return manifest, raw


def verify_bundle(
    bundle: Path, expect_sha256: str | None = None, copy_to: Path | None = None
) -> dict:
    """Refuse a bundle whose files were changed, added or removed, naming the file; anything
    else in it (a directory without listed files, a link, a FIFO) is refused too. This detects
    accidents, not attacks: whoever can change a file can regenerate the manifest, which is why
    `expect_sha256` checks the manifest itself against a digest from a trusted channel. With
    `copy_to`, each file's checked bytes are written there as they are hashed."""
    manifest, raw = read_manifest_bytes(bundle, expect_sha256)
    expected = manifest["files"]
    folders = {parent.as_posix() for name in expected for parent in PurePosixPath(name).parents}
    folders.add("saved_model/assets")  # TensorFlow writes it, empty (and DVC may drop it)
    for root, directories, files in os.walk(bundle):
        for name in sorted(directories + files):
            path = Path(root) / name
            relative = path.relative_to(bundle).as_posix()
            if path.is_symlink():
                raise BertclfError(f"{path}: a link; a package holds only files and folders")
            if path.is_dir():
                if relative not in folders:
                    raise BertclfError(
                        f"{path}: folder not in the manifest (added after packaging)"
                    )
            elif not path.is_file():
                raise BertclfError(f"{path}: not a regular file; a package holds only files")
            elif relative not in expected and relative != MANIFEST:
                raise BertclfError(f"{path}: file not in the manifest (added after packaging)")
    for name, digest in sorted(expected.items()):
        if not (bundle / name).is_file():
            raise BertclfError(f"{bundle / name}: file listed in the manifest is missing")
        if _copy_hashing(bundle / name, None if copy_to is None else copy_to / name) != digest:
            raise BertclfError(f"{bundle / name}: checksum does not match the manifest (changed)")
    if copy_to is not None:
        (copy_to / MANIFEST).write_bytes(raw)  # the very bytes: their sha256 is the digest
    return manifest


def _copy_hashing(source: Path, target: Path | None) -> str:
    """The sha256 of `source`, read once (not through a link); with `target`, those very
    bytes are written there too."""
    digest = hashlib.sha256()
    descriptor = os.open(source, os.O_RDONLY | os.O_NOFOLLOW)
    with open(descriptor, "rb") as handle:
        out = None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(target, "wb")  # noqa: SIM115 (closed below, with the input)
        try:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                if out is not None:
                    out.write(block)
        finally:
            if out is not None:
                out.close()
    return digest.hexdigest()


@contextmanager
def verified_copy(bundle: Path, expect_sha256: str | None = None):
    """A private copy of the package (a fresh 0700 directory), written from the very bytes
    whose checksums were checked, and the manifest: load from it, and a file swapped in the
    package after its check (a writer racing the loader) is never the one loaded. The copy is
    removed on leaving."""
    scratch = Path(tempfile.mkdtemp(prefix="bertclf-package-"))
    try:
        manifest = verify_bundle(bundle, expect_sha256, copy_to=scratch)
        yield scratch, manifest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def saved_model_ops(saved_model: Path) -> dict[str, set[str]]:
    """The op types of a SavedModel, read from saved_model.pb without loading (so without
    running) anything, by where they are: "reachable", those its signatures reach through every
    function they call; "saver", those in the functions TensorFlow's saver wrote, the ones
    the saver_def's save and restore nodes call (and what those call); "other", all the rest.

    Also "restoring_objects": objects that restore themselves with their own functions (a
    custom `_restore_from_tensors`, or a registered saver). `tf.saved_model.load` runs those
    while it restores the variables, before any check of ours could run the model."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((saved_model / "saved_model.pb").read_bytes())
    except Exception as error:  # protobuf's DecodeError, or a missing file
        raise BertclfError(f"{saved_model}/saved_model.pb: not a SavedModel ({error})") from None
    found = {"reachable": set(), "saver": set(), "other": set(), "restoring_objects": set()}
    for graph in proto.meta_graphs:
        functions = {f.signature.name: f.node_def for f in graph.graph_def.library.function}
        nodes = {node.name: [node] for node in graph.graph_def.node}
        found["other"].update(node.op for node in graph.graph_def.node)

        saver = graph.saver_def
        saver_nodes = [nodes.get(name.split(":")[0], []) for name in
                       (saver.save_tensor_name, saver.restore_op_name) if name]  # fmt: skip
        saver_functions = _called(functions, saver_nodes)
        signature_nodes = [
            nodes.get(tensor.name.split(":")[0], [])
            for signature in graph.signature_def.values()
            for tensor in [*signature.inputs.values(), *signature.outputs.values()]
        ]
        for nodes_list in signature_nodes:
            found["reachable"].update(node.op for node in nodes_list)
        for name in _called(functions, signature_nodes):
            found["reachable"].update(node.op for node in functions.get(name, []))
        for name, body in functions.items():
            found["saver" if name in saver_functions else "other"].update(n.op for n in body)
        for index, obj in enumerate(graph.object_graph_def.nodes):
            custom = [s for s in obj.saveable_objects.values()
                      if s.save_function or s.restore_function]  # fmt: skip
            if custom or obj.registered_saver:
                found["restoring_objects"].add(_object_path(graph.object_graph_def, index))
    return found


def _called(functions: dict, roots: list[list]) -> set[str]:
    """The names of the functions that `roots` (lists of nodes) call, directly or through
    others; `functions` maps a name to its nodes."""
    seen, to_visit = set(), list(roots)
    while to_visit:
        for node in to_visit.pop():
            for attr in node.attr.values():
                for name in [attr.func.name, *(f.name for f in attr.list.func)]:
                    if name and name not in seen:
                        seen.add(name)
                        to_visit.append(functions.get(name, []))
    return seen


def _object_path(object_graph, index: int) -> str:
    """The attribute path of an object of a SavedModel's object graph, such as 'model.evil'."""
    parents = {child.node_id: (i, child.local_name)
               for i, node in enumerate(object_graph.nodes) for child in node.children}  # fmt: skip
    names, seen = [], set()
    while index in parents and index not in seen:
        seen.add(index)
        index, name = parents[index]
        names.append(name)
    return ".".join(reversed(names)) or "the root object"


def check_saved_model_ops(saved_model: Path) -> None:
    """Refuse a SavedModel with an op that packages written by bertclf do not use: a graph is a
    program, and one that was swapped could read or write files when it runs. Ops that read
    or write files are allowed only in the functions TensorFlow's saver wrote, found by the
    saver_def's nodes that call them, and objects that restore themselves with their own
    functions are refused, since loading runs those."""
    from bertclf.saved_model_ops import CHECKPOINT_OPS, PACKAGE_OPS

    found = saved_model_ops(saved_model)
    if found["restoring_objects"]:
        names = ", ".join(f"'{name}'" for name in sorted(found["restoring_objects"]))
        raise BertclfError(
            f"{saved_model}: object {names} restores its state with its own function, which "
            "TensorFlow would run at load; a bertclf package has none"
        )
    unknown = sorted(
        (found["reachable"] | found["other"]) - PACKAGE_OPS
        | (found["saver"] - PACKAGE_OPS - CHECKPOINT_OPS)
    )
    if unknown:
        names = ", ".join(f"'{op}'" for op in unknown)
        raise BertclfError(
            f"{saved_model}: op {names} is not one a bertclf package uses"
            if len(unknown) == 1
            else f"{saved_model}: ops {names} are not ones a bertclf package uses"
        )


def copy_files(sources: list[Path], bundle: Path) -> None:
    for source in sources:
        shutil.copy(source, bundle / source.name)
