"""`data.clean`: the cleaning `prepare` applies to every text before training, and every
prediction path applies too, since a package records it. Two versions of one rule, side by
side: `clean_text` in Python (prepare, the Python API, the CLI and the server) and
`clean_in_graph` in TensorFlow ops (the raw-text SavedModel). Their character classes are
read from Python's own tables here, so they agree character for character;
tests/test_cleaning.py holds them equal on random texts.

Importing this module does not import TensorFlow; `clean_in_graph` does.
"""

import html
import html.entities
import re
import sys
import unicodedata
from functools import cache

from bertclf.config import CleanConfig

_URL = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_HTML_TAG = re.compile(r"<[^>]+>")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")
# html.unescape's character references (Python's own pattern, as a fact of the standard)
_CHARREF = r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)"


def _lower(text: str) -> str:
    """Each character's lowercase: as str.lower, but the Greek capital sigma is always σ (never
    the word-final ς), as the encoder's own lowercasing does; a graph cannot see word ends."""
    return "".join(char.lower() for char in text)


def clean_text(text: str, options: CleanConfig) -> str:
    """Apply the configured cleaning steps. With every option off, only outer whitespace goes."""
    if options.remove_html:
        text = html.unescape(_HTML_TAG.sub(" ", text))
    if options.remove_urls:
        text = _URL.sub(" ", text)
    if options.remove_punctuation:
        text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text)
    if options.remove_digits:
        text = _DIGITS.sub(" ", text)
    if options.lowercase:
        text = _lower(text)
    if options.remove_stopwords:
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        text = " ".join(w for w in text.split() if _lower(w) not in ENGLISH_STOP_WORDS)
    if (
        options.remove_html
        or options.remove_urls
        or options.remove_punctuation
        or options.remove_digits
    ):
        text = _SPACES.sub(" ", text)
    return text.strip()


def clean_texts(texts: list[str], options: CleanConfig | None) -> list[str]:
    """`clean_text` on each text, or the texts as they are when no step is on."""
    return [clean_text(text, options) for text in texts] if cleans(options) else texts


def cleans(options: CleanConfig | None) -> bool:
    """Whether any step is on (with none, only outer whitespace goes, which no tokenizer sees)."""
    return options is not None and any(vars(options).values())


# The graph's version. RE2, TensorFlow's regex engine, reads \s, \d and \p{P} by its own
# (ASCII or other Unicode) tables, so each class is spelled out from Python's.


def _class(predicate) -> str:
    """An RE2 character class of every code point for which `predicate(char)` holds."""
    ranges, start, previous = [], None, None
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF or not predicate(chr(code)):
            continue
        if start is None or code != previous + 1:
            if start is not None:
                ranges.append((start, previous))
            start = code
        previous = code
    if start is not None:
        ranges.append((start, previous))
    spelled = "".join(
        f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges
    )
    return f"[{spelled}]"


@cache
def _classes() -> dict[str, str]:
    return {
        "space": _class(str.isspace),  # Python's \s, str.split and str.strip
        "digit": _class(lambda c: unicodedata.category(c) == "Nd"),  # Python's \d
        "punctuation": _class(lambda c: unicodedata.category(c).startswith("P")),
    }


def cleaning_tables() -> dict:
    """Lookup tables of Python's facts for `clean_in_graph`: HTML5's named references, the
    numeric references html.unescape replaces or drops, each character's lowercase, and the
    stop words. Made eagerly, and kept by the module that exports them."""
    import numpy as np
    import tensorflow as tf
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    named = html.entities.html5
    lower = [(c, chr(c).lower()) for c in range(sys.maxunicode + 1)
             if not 0xD800 <= c <= 0xDFFF and chr(c).lower() != chr(c)]  # fmt: skip
    invalid = sorted(html._invalid_charrefs.items())  # noqa: SLF001 (facts of the standard)
    dropped = sorted(html._invalid_codepoints)  # noqa: SLF001
    return {
        "named": string_table(list(named), list(named.values()), tf.string),
        "invalid": string_table(
            np.array([k for k, _ in invalid], np.int64), [v for _, v in invalid], tf.int64
        ),  # fmt: skip
        "dropped": string_table(np.array(dropped, np.int64), [""] * len(dropped), tf.int64),
        "lower": string_table(
            np.array([k for k, _ in lower], np.int32), [v for _, v in lower], tf.int32
        ),  # fmt: skip
        "stop": string_table(
            sorted(ENGLISH_STOP_WORDS), [""] * len(ENGLISH_STOP_WORDS), tf.string
        ),  # fmt: skip
    }


MISSING = b"\xff"  # a lookup's "not there": a lone byte that no UTF-8 value is


def string_table(keys, values, key_dtype):
    """A lookup table of strings, MISSING for a key it does not hold."""
    import tensorflow as tf

    initializer = tf.lookup.KeyValueTensorInitializer(
        tf.constant(keys, key_dtype), tf.constant(values, tf.string)
    )
    return tf.lookup.StaticHashTable(initializer, default_value=MISSING)


def map_characters(text, table):
    """Each character of each text replaced by what `table` (code point to string) holds for
    it, kept where it holds nothing."""
    import tensorflow as tf

    chars = tf.strings.unicode_split(text, "UTF-8", errors="replace")
    codes = tf.strings.unicode_decode(text, "UTF-8", errors="replace")
    mapped = table.lookup(codes.flat_values)
    flat = tf.where(mapped == MISSING, chars.flat_values, mapped)
    return tf.strings.reduce_join(chars.with_flat_values(flat), axis=-1)


def _unescape_in_graph(text, tables: dict):
    """html.unescape: each character reference replaced as Python's does (named ones by the
    longest name that matches, numeric ones with the standard's replacements).

    A reference starts at an "&" and holds none, so the text is split at every "&" and each
    piece after one is matched at its start. (tensorflow-text's regex_split would be simpler,
    but it ends a text at its first NUL character.)"""
    import tensorflow as tf

    pieces = tf.strings.split(text, sep="&")
    flat = pieces.flat_values
    reference = f"(?s)^{_CHARREF[1:]}(.*)$"  # after the "&": the reference (1), the rest (2)
    is_reference = tf.strings.regex_full_match(flat, reference)
    body = tf.strings.regex_replace(flat, reference, r"\1")
    after = tf.where(is_reference, tf.strings.regex_replace(flat, reference, r"\2"), "")
    # numeric: strip "#", "x" and leading zeros; more digits than 0x10FFFF has is too large
    is_numeric = tf.strings.regex_full_match(body, "#[0-9]+;?|#[xX][0-9a-fA-F]+;?")
    is_hex = tf.strings.regex_full_match(body, "#[xX].*")
    digits = tf.strings.regex_replace(tf.where(is_numeric, body, "#0"), "^#[xX]?0*|;$", "")
    too_long = tf.strings.length(digits) > tf.where(is_hex, 6, 7)
    digits = tf.where(too_long, "0", digits)
    codes = tf.cast(tf.strings.unicode_decode(digits, "UTF-8"), tf.int64)
    lowered = tf.bitwise.bitwise_or(codes, 0x20)  # "A" to "a"
    values = tf.where(codes <= ord("9"), codes - ord("0"), lowered - ord("a") + 10)
    base = tf.where(is_hex, tf.constant(16, tf.int64), tf.constant(10, tf.int64))
    powers = codes.row_lengths()[:, None] - 1 - tf.ragged.range(codes.row_lengths())
    number = tf.reduce_sum(values * tf.pow(base[:, None], powers), axis=1)
    out_of_range = too_long | ((number >= 0xD800) & (number <= 0xDFFF)) | (number > 0x10FFFF)
    safe = tf.cast(tf.where(out_of_range, tf.constant(0x20, tf.int64), number), tf.int32)
    encoded = tf.strings.unicode_encode(tf.expand_dims(safe, 1), "UTF-8")
    dropped = tables["dropped"].lookup(number) != MISSING
    numeric = tf.where(out_of_range, "\ufffd", tf.where(dropped, "", encoded))
    invalid = tables["invalid"].lookup(number)
    numeric = tf.where(invalid != MISSING, invalid, numeric)
    # named: the whole name, else the longest prefix of at least two characters that is one
    length = tf.strings.length(body, unit="UTF8_CHAR")
    named = tables["named"].lookup(body)
    found = named != MISSING
    for size in range(32, 1, -1):
        prefix = tables["named"].lookup(tf.strings.substr(body, 0, size, unit="UTF8_CHAR"))
        hit = ~found & (prefix != MISSING) & (size < length)
        start = tf.minimum(size, length)
        rest = tf.strings.substr(body, start, length - start, unit="UTF8_CHAR")
        named = tf.where(hit, prefix + rest, named)
        found |= hit
    named = tf.where(found, named, "&" + body)
    replaced = tf.where(is_reference, tf.where(is_numeric, numeric, named) + after, "&" + flat)
    # the first piece of each text comes before any "&"
    first = tf.range(tf.size(flat, out_type=tf.int64)) == tf.gather(
        pieces.row_starts(), pieces.value_rowids()
    )
    replaced = tf.where(first, flat, replaced)
    return tf.strings.reduce_join(pieces.with_flat_values(replaced), axis=-1)


def clean_in_graph(text, options: CleanConfig, tables: dict):
    """`clean_text` in TensorFlow ops, on a batch of strings: what the raw-text SavedModel
    applies before tokenizing. `tables`: `cleaning_tables()`."""
    import tensorflow as tf

    classes = _classes()
    space = classes["space"]
    if options.remove_html:
        text = _unescape_in_graph(tf.strings.regex_replace(text, "<[^>]+>", " "), tables)
    if options.remove_urls:
        not_space = "[^" + space[1:]
        text = tf.strings.regex_replace(text, f"(?i)(https?://|www\\.){not_space}+", " ")
    if options.remove_punctuation:
        text = tf.strings.regex_replace(text, classes["punctuation"], " ")
    if options.remove_digits:
        text = tf.strings.regex_replace(text, classes["digit"] + "+", " ")
    if options.lowercase:
        text = map_characters(text, tables["lower"])
    if options.remove_stopwords:  # split as str.split() does (regex_split would end at NUL)
        words = tf.strings.split(tf.strings.regex_replace(text, space + "+", " "), sep=" ")
        flat = words.flat_values
        lowered = map_characters(flat, tables["lower"])
        drop = (tables["stop"].lookup(lowered) != MISSING) | (flat == "")
        words = tf.ragged.boolean_mask(words, words.with_flat_values(~drop))
        text = tf.strings.reduce_join(words, axis=-1, separator=" ")
    if (
        options.remove_html
        or options.remove_urls
        or options.remove_punctuation
        or options.remove_digits
    ):
        text = tf.strings.regex_replace(text, space + "+", " ")
    return tf.strings.regex_replace(text, f"^{space}+|{space}+$", "")
