"""Cleaning: strip texts and labels, drop unusable rows, and count every drop by its reason.

With ``strip_html`` (``--strip-html``) HTML line breaks (``<br />``, ``<br/>``, ``<br>``, any
case) become a newline first; `clean_text` does the same to a text at prediction, so a model
reads its inputs as it read its training texts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
DROP_REASONS = ("missing text", "missing label", "empty text", "empty label", "duplicate text")


@dataclass
class Cleaned:
    """The rows that survive cleaning, renumbered 0..n-1 (these numbers are the row ids)."""

    frame: pd.DataFrame  # text: str; label: str or an ordered Categorical; part (optional)
    rows_read: int
    dropped: dict[str, int]  # reason -> rows, for every reason in DROP_REASONS
    html_changed: int = 0  # texts whose <br /> tags strip_html replaced


def clean_text(text: str, *, strip_html: bool = False) -> str:
    """One text as cleaning leaves it: line breaks replaced (``strip_html``), then stripped."""
    return (HTML_BREAK.sub("\n", text) if strip_html else text).strip()


def clean(frame: pd.DataFrame, *, dedupe: bool = False, strip_html: bool = False) -> Cleaned:
    """Strip whitespace; drop rows whose text or label is missing or empty; optionally
    drop repeated texts (the first one stays). Each dropped row counts under its first reason.

    A label column that is an ordered Categorical keeps its declared order, so the label map
    can follow it. ``strip_html`` replaces HTML line breaks with a newline before stripping.
    A ``part`` or ``split`` column (predefined or official splits) is kept.
    """
    texts = [_cell(v) for v in frame["text"].tolist()]
    html_changed = 0
    if strip_html:
        texts, html_changed = _strip_html(texts)
    labels = [_cell(v) for v in frame["label"].tolist()]
    keep = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    seen: set[str] = set()
    for i, (text, label) in enumerate(zip(texts, labels, strict=True)):
        reason = _drop_reason(text, label, seen if dedupe else None)
        if reason:
            dropped[reason] += 1
            continue
        seen.add(text)
        keep.append(i)
    out = pd.DataFrame(
        {
            "text": pd.Series([texts[i] for i in keep], dtype=object),
            "label": _labels([labels[i] for i in keep], frame["label"].dtype),
        }
    )
    for column in ("part", "split"):
        if column in frame.columns:
            out[column] = frame[column].to_numpy()[keep]
    return Cleaned(out, rows_read=len(frame), dropped=dropped, html_changed=html_changed)


def _strip_html(texts: list[str | None]) -> tuple[list[str | None], int]:
    """``texts`` with HTML line breaks as newlines (stripped again), and how many changed."""
    out, changed = [], 0
    for text in texts:
        if text is not None and "<" in text:
            new = HTML_BREAK.sub("\n", text).strip()
            changed += new != text
            text = new
        out.append(text)
    return out, changed


def fingerprint(frame: pd.DataFrame) -> str:
    """sha256 over the cleaned (text, label) rows in order: it changes when the data does."""
    digest = hashlib.sha256(b"llmclf-data-v1\n")
    rows = zip(frame["text"].tolist(), frame["label"].astype(str).tolist(), strict=True)
    for text, label in rows:
        digest.update(json.dumps([text, label], ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _drop_reason(text: str | None, label: str | None, seen: set[str] | None) -> str | None:
    if text is None:
        return "missing text"
    if label is None:
        return "missing label"
    if not text:
        return "empty text"
    if not label:
        return "empty label"
    if seen is not None and text in seen:
        return "duplicate text"
    return None


def _cell(value: Any) -> str | None:
    """A stripped string, or None for a missing value; integral floats lose their ``.0``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return (value if isinstance(value, str) else str(value)).strip()


def _labels(labels: list[str | None], dtype: Any) -> pd.Series:
    """Labels as strings; an ordered Categorical keeps its declared (stripped) order."""
    if isinstance(dtype, pd.CategoricalDtype) and dtype.ordered:
        order = [c for c in dict.fromkeys(_cell(c) for c in dtype.categories) if c]
        return pd.Series(pd.Categorical(labels, categories=order, ordered=True))
    return pd.Series(labels, dtype=object)
