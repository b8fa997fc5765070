"""The built-in ``imdb`` dataset: the Large Movie Review Dataset v1.0 (Maas et al., ACL 2011).

50,000 movie reviews labelled ``neg`` / ``pos``, with the official 25,000 / 25,000 train/test
partition as a ``split`` column (``--split official`` uses it; fractions ignore it). The
official ``aclImdb_v1.tar.gz`` (84 MB) is downloaded once into ``$LLMCLF_HOME/imdb/`` and the
reviews are read straight from the archive, in one streamed pass: nothing is extracted. No
hash is pinned (a mirror may serve a repack that holds only the labelled reviews); the
structure is checked instead: ``aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt``, 12,500
reviews in each of the four folders. Rows come in a fixed order (train then test, neg then
pos, by review id), whatever the order of the archive's members.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import assets
from ..errors import DataError
from ..registry import datasets

if TYPE_CHECKING:
    import pandas as pd

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_ASSET = assets.Asset(
    "imdb/aclImdb_v1.tar.gz",
    IMDB_URL,
    None,  # no pinned hash: the structure is validated instead (see the module docstring)
    what="IMDb Large Movie Review Dataset (84 MB)",
)
IMDB_LABELS = ("neg", "pos")
IMDB_PARTS = ("train", "test")
PER_FOLDER = 12_500
_MEMBER = re.compile(r"(?:\./)?aclImdb/(train|test)/(neg|pos)/(\d+)_(\d+)\.txt")
PROGRESS_EVERY = 1_000


@datasets.register(
    "imdb",
    description="IMDb Large Movie Review Dataset: 50,000 reviews, neg/pos, official split",
    builtin=True,
)
def imdb(reporter: Any = None) -> pd.DataFrame:
    """IMDb Large Movie Review Dataset: 50,000 reviews, neg/pos, official split.

    Downloaded once (84 MB) into ``$LLMCLF_HOME/imdb/`` and read from the archive; columns
    ``text``, ``label`` (an ordered Categorical: neg is 0, pos is 1) and ``split``
    (``train`` / ``test``). ``reporter`` receives ``read imdb`` phase events.
    """
    import pandas as pd

    texts, labels, parts = read_imdb(imdb_archive(), reporter=reporter)
    return pd.DataFrame(
        {
            "text": texts,
            "label": pd.Categorical(labels, categories=IMDB_LABELS, ordered=True),
            "split": parts,
        }
    )


imdb.assets = (IMDB_ASSET,)  # type: ignore[attr-defined]  # what `llmclf download imdb` fetches


def imdb_archive() -> Path:
    """``$LLMCLF_HOME/imdb/aclImdb_v1.tar.gz``, downloaded when absent."""
    return assets.fetch(IMDB_ASSET)


def read_imdb(
    path: str | Path, *, per_folder: int | None = PER_FOLDER, reporter: Any = None
) -> tuple[list[str], list[str], list[str]]:
    """(texts, labels, splits) of the labelled reviews in an ``aclImdb`` tar.gz archive.

    Reads the archive in one streamed pass (members outside the four labelled folders, such
    as ``unsup/``, are skipped). Raises a one-line `DataError` for a file that is not a
    gzipped tar, or when a folder is missing or does not hold ``per_folder`` reviews (None:
    any number but at least one).
    """
    from ..reporting import Phase

    path = Path(path)
    found: dict[tuple[str, str], list[tuple[int, str]]] = {
        (part, label): [] for part in IMDB_PARTS for label in IMDB_LABELS
    }
    total = None if per_folder is None else per_folder * len(found)
    with Phase(reporter, "read imdb", total=total) as phase:
        try:
            _read_members(path, found, phase)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(
                f"cannot read {path} as the IMDb archive ({exc}); delete it so llmclf downloads "
                f"it again from {IMDB_URL}"
            ) from None
    _check_structure(path, found, per_folder)
    texts, labels, parts = [], [], []
    for (part, label), reviews in found.items():
        for _, text in sorted(reviews):
            texts.append(text)
            labels.append(label)
            parts.append(part)
    return texts, labels, parts


def _read_members(
    path: Path, found: dict[tuple[str, str], list[tuple[int, str]]], phase: Any
) -> None:
    done = 0
    with tarfile.open(path, mode="r|gz") as archive:  # streamed: no seeking, no extraction
        while (member := archive.next()) is not None:
            archive.members = []  # forget the headers passed (100,000 of them, ~60 MB)
            match = _MEMBER.fullmatch(member.name)
            if match is None or not member.isfile():
                continue
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            part, label, review = match.group(1), match.group(2), int(match.group(3))
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(f"{path}: {member.name} is not valid UTF-8") from None
            found[(part, label)].append((review, text))
            done += 1
            if done % PROGRESS_EVERY == 0:
                phase.advance(PROGRESS_EVERY)
    if done % PROGRESS_EVERY:
        phase.advance(done % PROGRESS_EVERY)


def _check_structure(
    path: Path, found: dict[tuple[str, str], list[tuple[int, str]]], per_folder: int | None
) -> None:
    wrong = []
    for (part, label), reviews in found.items():
        if not reviews or (per_folder is not None and len(reviews) != per_folder):
            want = f"{per_folder:,}" if per_folder is not None else "some"
            wrong.append(f"aclImdb/{part}/{label}/ has {len(reviews):,} reviews, not {want}")
    if wrong:
        raise DataError(
            f"{path} is not the IMDb archive: {'; '.join(wrong)}; delete it so llmclf downloads "
            f"it again from {IMDB_URL}"
        )
