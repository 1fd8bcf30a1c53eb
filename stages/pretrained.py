"""Resolve model.pretrained into models/pretrained/: the encoder's files, copied and checked."""

from bertclf.config import load_section
from bertclf.errors import BertclfError, exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.layout import SOURCE
from bertclf.paths import PRETRAINED


@exits_cleanly
def main() -> None:
    model = load_section("model")
    seed = load_section("seed")

    from bertclf.model import resolve_pretrained  # imports TensorFlow: after validation

    with atomic_path(PRETRAINED, replace_directory=True) as tmp:
        try:
            info = resolve_pretrained(model, tmp, seed)
        except BertclfError:
            raise
        except Exception as error:  # the check: files that do not make a BERT (cut, foreign)
            reason = " ".join(str(error).split()) or type(error).__name__
            raise BertclfError(
                f"model.pretrained: {model.pretrained}: the encoder's files do not load "
                f"({type(error).__name__}: {reason})"
            ) from None
        write_json(tmp / SOURCE, info)
    print(f"pretrained: {info['name']} ({info['parameters']:,} parameters) from {info['origin']}")


if __name__ == "__main__":
    main()
