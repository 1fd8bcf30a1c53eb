"""`data.clean` in Python (prepare, the API, the CLI, the server) and in the graph (the raw-text
SavedModel): the same text out for any text in, with every combination of steps."""

import html

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertclf.cleaning import clean_in_graph, clean_text, cleaning_tables
from bertclf.config import CleanConfig

STEPS = [
    "remove_urls", "remove_html", "remove_punctuation", "remove_digits", "remove_stopwords",
    "lowercase",
]  # fmt: skip
ALL_ON = CleanConfig(**dict.fromkeys(STEPS, True))
# pieces that cleaning acts on, mixed into random text
FRAGMENTS = st.sampled_from([
    "<b>", "</p>", "<a href='x'>", "<", ">", "&amp;", "&amp", "&ampx", "&notin;", "&notit;",
    "&#65;", "&#x41;", "&#X1F600;", "&#0;", "&#128;", "&#x80", "&#55296;", "&#1114112;",
    "&#99999999999;", "&#xFFFE;", "&#0000065;", "&#;", "&#x;", "&", "&&lt;", "&lt&gt",
    "http://x.io/a?b=1", "HTTPS://Y.Z", "www.example.com", "ſ", "K", "\u03a3", "\u0130",
    "the", "The", "AND", " ", "\t", "\u00a0", "\u2028", "\x1c", "\u3000", "0", "\u0663",
    "\U0001d7d9", ",", "!", "\u2026", "\u00bf", "_", "-", "\u3002", "\U0001f600", "\u00e9",
    "\x00", "&\x00", "&amp\x00;", "\x01", "\n", "&#x41\n",
])  # fmt: skip
TEXT = st.lists(
    st.one_of(FRAGMENTS, st.text(st.characters(exclude_categories=["Cs"]), max_size=8)),
    max_size=12,
).map("".join)


TABLES = cleaning_tables()


def in_graph(texts: list[str], options: CleanConfig) -> list[str]:
    cleaned = clean_in_graph(tf.constant(texts), options, TABLES)
    return [text.decode("utf-8") for text in cleaned.numpy()]


@pytest.mark.parametrize("step", STEPS)
def test_each_step_alone_cleans_alike(step):
    options = CleanConfig(**{s: s == step for s in STEPS})
    texts = [
        "Visit <b>https://x.io</b> now, 42 Times &amp; more! &notit; &#x1F600; \u0663\u0664",
        "  THE cat\u00a0and\u3000the DOG\u2028\u039f\u0394\u039f\u03a3 \u0130  ",
        "",
    ]
    assert in_graph(texts, options) == [clean_text(t, options) for t in texts]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXT, min_size=1, max_size=6), steps=st.lists(st.booleans(),
       min_size=len(STEPS), max_size=len(STEPS)))  # fmt: skip
def test_any_text_is_cleaned_alike_in_python_and_in_the_graph(texts, steps):
    options = CleanConfig(**dict(zip(STEPS, steps, strict=True)))
    assert in_graph(texts, options) == [clean_text(t, options) for t in texts]


@settings(max_examples=80, deadline=None)
@given(st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=10).map("".join))
def test_html_references_are_unescaped_as_python_does(text):
    """html.unescape itself, on texts without tags (which the step also removes)."""
    text = text.replace("<", "")
    only_html = CleanConfig(**{s: s == "remove_html" for s in STEPS})
    expected = " ".join(html.unescape(text).split()).strip()
    assert in_graph([text], only_html) == [clean_text(text, only_html)] == [expected]
