"""Resolve model.pretrained into models/pretrained/: TF-native weights plus tokenizer files."""

from bertclf.config import load_section
from bertclf.errors import exits_cleanly
from bertclf.files import atomic_path, write_json
from bertclf.layout import SOURCE
from bertclf.paths import PRETRAINED


@exits_cleanly
def main() -> None:
    model = load_section("model")
    seed = load_section("seed")

    from bertclf.model import resolve_pretrained  # imports TensorFlow: after validation

    with atomic_path(PRETRAINED, replace_directory=True) as tmp:
        info = resolve_pretrained(model, tmp, seed)
        write_json(tmp / SOURCE, info)
    print(f"pretrained: {info['name']} ({info['parameters']:,} parameters) from {info['origin']}")


if __name__ == "__main__":
    main()
