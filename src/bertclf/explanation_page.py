"""`bertclf explain`'s outputs: a self-contained HTML page (each text with its tokens shaded by
attribution) or JSON Lines (the same data, one text per line)."""

import html
import json
from pathlib import Path

from bertclf.errors import BertclfError

OUTPUT_FORMATS = (".html", ".jsonl")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.3em; }
.legend span { padding: 0 .4em; border-radius: .2em; }
section { border-top: 1px solid #ccc; padding: .6em 0; }
.answer { font-weight: 600; margin: .3em 0; }
.id { color: #666; font-weight: normal; }
.text { line-height: 1.9; white-space: pre-wrap; }
.text span { border-radius: .2em; padding: .1em 0; }
.note { color: #666; font-size: .9em; }
"""


def output_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise BertclfError(
            f"{path}: expected an output ending in {' or '.join(OUTPUT_FORMATS)} (an HTML page, "
            "or JSON Lines)"
        )
    return suffix


def shade(attribution: float, largest: float) -> str:
    """The background of a token: green where it raised the answer, red where it lowered it,
    as strong as its share of the text's largest attribution."""
    strength = 0.0 if largest == 0 else min(abs(attribution) / largest, 1.0)
    rgb = "22, 160, 70" if attribution > 0 else "215, 40, 40"
    return f"background: rgba({rgb}, {strength * 0.85:.3f})"


def shaded_text(text: str, tokens: list[dict], attributions: list[float], largest: float) -> str:
    """`text` as HTML, each token a span shaded by its attribution (the value in its title)."""
    parts, at = [], 0
    for token, value in sorted(zip(tokens, attributions, strict=True), key=lambda t: t[0]["start"]):
        start, end = token["start"], token["end"]
        if start < at:  # a word piece inside a span already written
            continue
        parts.append(html.escape(text[at:start]))
        parts.append(
            f'<span style="{shade(value, largest)}" title="{value:+.4f}">'
            f"{html.escape(text[start:end])}</span>"
        )
        at = end
    parts.append(html.escape(text[at:]))
    return "".join(parts)


def explanation_section(result: dict, row_id=None) -> str:
    """One text's block: each explained answer, and its text(s) shaded."""
    texts = result.get("model_text", [result["text"], result.get("text_pair")])
    if isinstance(texts, str):
        texts = [texts, None]
    blocks = []
    for explained in result["explained"]:
        values = explained["attributions"]
        largest = max((abs(v) for v in values), default=0.0)
        name = html.escape(explained["label"])
        kind = "score" if explained["label"] == "score" else "probability"
        shown = f"{name}, {kind} {explained['value']:.3f}"
        blocks.append(f'<div class="answer">{shown}</div>')
        for side, text in enumerate(texts):
            if text is None:
                continue
            tokens = [t for t in result["tokens"] if t.get("side", 0) == side]
            ours = [
                v for t, v in zip(result["tokens"], values, strict=True) if t.get("side", 0) == side
            ]
            blocks.append(f'<div class="text">{shaded_text(text, tokens, ours, largest)}</div>')
    if not result["explained"]:
        blocks.append('<div class="answer">no label reached its threshold</div>')
        blocks.append(f'<div class="text">{html.escape(texts[0])}</div>')
    if "model_text" in result:
        blocks.append('<div class="note">shown as the model read it, after data.clean</div>')
    head = "" if row_id is None else f'<div class="answer id">{html.escape(str(row_id))}</div>'
    return f"<section>{head}{''.join(blocks)}</section>"


def page(results: list[dict], ids: list | None, title: str, method: str) -> str:
    """The whole page: inline style, no script, nothing fetched."""
    sections = [
        explanation_section(result, None if ids is None else ids[i])
        for i, result in enumerate(results)
    ]
    legend = (
        f'<span style="{shade(1, 1)}">raised the answer</span> '
        f'<span style="{shade(-1, 1)}">lowered it</span>'
    )
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p class=\"legend\">{legend}. Shade: the token's share of its text's largest "
        f"attribution ({html.escape(method)}); hover a token for its value. Text the model "
        "did not see is unshaded.</p>"
        f"{''.join(sections)}</body></html>\n"
    )


def write_explanations(
    path: Path, results: list[dict], ids: list | None, title: str, method: str
) -> None:
    """The page or the JSON Lines, by `path`'s suffix, written to `path` (a scratch path the
    caller renames into place)."""
    if output_format(str(path)) == ".html":
        path.write_text(page(results, ids, title, method), encoding="utf-8")
        return
    with path.open("w", encoding="utf-8") as out:
        for i, result in enumerate(results):
            row = result if ids is None else {"id": ids[i], **result}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
