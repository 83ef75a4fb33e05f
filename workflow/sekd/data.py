"""ALMA human-written parallel data: paths, fetching, strict readers and example building.

Every language pair is against English (key ``"xx-en"``, directory ``xxen/``); all paths
returned here are relative to the ``human_written_data/`` root of the ALMA repository.
No torch/transformers imports: this module is imported when the Snakefile is parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sekd.errors import DataError

T = TypeVar("T")

DATA_SUBDIR = "human_written_data"
_CODE = re.compile(r"[a-z]{2,3}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


# --------------------------------------------------------------------------- keys and paths


def split_direction(direction: str) -> tuple[str, str]:
    """``"de-en"`` -> ``("de", "en")``; ValueError unless ``ab-cd`` with one side ``en``."""
    parts = direction.split("-") if isinstance(direction, str) else []
    if (
        len(parts) != 2
        or not all(_CODE.fullmatch(p) for p in parts)
        or parts[0] == parts[1]
        or "en" not in parts
    ):
        raise ValueError(
            f"invalid language direction {direction!r}: expected 'xx-en' or 'en-xx' "
            "with 2-3 letter lowercase language codes"
        )
    return parts[0], parts[1]


def pair_of(direction: str) -> str:
    """The language-pair key (``"xx-en"``) a direction belongs to: ``"en-de"`` -> ``"de-en"``."""
    src, tgt = split_direction(direction)
    return f"{tgt if src == 'en' else src}-en"


def _check_pair(pair: str) -> str:
    """Return the non-English code of a pair key, which must be ``"xx-en"``."""
    xx, en = split_direction(pair)
    if en != "en":
        raise ValueError(f"invalid language pair {pair!r}: pair keys are 'xx-en' (e.g. 'de-en')")
    return xx


def train_files(pair: str) -> tuple[str, str]:
    """(source, English) training files of pair ``"xx-en"``."""
    xx = _check_pair(pair)
    return f"{xx}en/train.{xx}-en.{xx}", f"{xx}en/train.{xx}-en.en"


def valid_file(direction: str) -> str:
    """Validation JSON of a direction (one file per pair, read in either direction)."""
    xx = _check_pair(pair_of(direction))
    return f"{xx}en/valid.{xx}-en.json"


def test_file(direction: str) -> str:
    """Test JSON of a direction ``a-b``: ``{xx}en/test.a-b.json``."""
    src, tgt = split_direction(direction)
    xx = _check_pair(pair_of(direction))
    return f"{xx}en/test.{src}-{tgt}.json"


test_file.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported


# --------------------------------------------------------------------------- checksums / fetch


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def read_sha256sums(path: str | os.PathLike[str], prefix: str = "") -> dict[str, str]:
    """Parse a ``sha256sum`` listing into {relpath: sha256}; keep entries under ``prefix``
    (which is stripped, e.g. ``"human_written_data/"``)."""
    out: dict[str, str] = {}
    for lineno, line in enumerate(_decode_lines(Path(path)), 1):
        if not line.strip():
            continue
        digest, sep, name = line.partition(" ")
        name = name[1:] if name[:1] in (" ", "*") else name
        if not sep or not _SHA256.fullmatch(digest.lower()) or not name:
            raise DataError(f"{path}:{lineno}: expected '<sha256>  <path>', got {line!r}")
        if name.startswith(prefix):
            out[name[len(prefix) :]] = digest.lower()
    return out


def verify_checksums(root: str | os.PathLike[str], sha_map: dict[str, str]) -> None:
    """Check every ``root/relpath`` against ``sha_map``; DataError listing each bad file."""
    problems = []
    for rel, expected in sorted(sha_map.items()):
        path = Path(root) / rel
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        actual = sha256_file(path)
        if actual != expected.lower():
            problems.append(f"{path}: sha256 mismatch: expected {expected}, got {actual}")
    if problems:
        raise DataError("checksum verification failed:\n  " + "\n  ".join(problems))


def _check_relpath(relpath: str) -> None:
    p = Path(relpath)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise ValueError(f"invalid data path {relpath!r}: must be relative, without '..'")


def fetch_file(
    relpath: str,
    dest: str | os.PathLike[str],
    *,
    url: str | None = None,
    mirror: str | os.PathLike[str] | None = None,
    sha256: str,
) -> Path:
    """Fetch ``relpath`` (below ``human_written_data/``) to ``dest`` and verify its sha256.

    Copies ``mirror/human_written_data/relpath`` when ``mirror`` is given, else downloads
    ``url + "/" + relpath`` (any urllib URL, ``file://`` included). Writes a temp file next
    to ``dest`` and renames it into place only after the checksum matches, so a failure
    leaves neither ``dest`` nor the temp file behind.
    """
    _check_relpath(relpath)
    if not _SHA256.fullmatch(sha256.lower()):
        raise ValueError(f"{relpath}: invalid sha256 {sha256!r}")
    if mirror is None and url is None:
        raise ValueError(f"{relpath}: neither a mirror nor a URL to fetch from")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open_source(relpath, url, mirror) as src:
            h = hashlib.sha256()
            for chunk in iter(lambda: src.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        actual = h.hexdigest()
        if actual != sha256.lower():
            raise DataError(f"{relpath}: sha256 mismatch: expected {sha256}, got {actual}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


@contextlib.contextmanager
def _open_source(relpath: str, url: str | None, mirror: str | os.PathLike[str] | None) -> Iterator:
    """Binary stream of the file to fetch, from the mirror or the URL."""
    if mirror is not None:
        src = Path(mirror) / DATA_SUBDIR / relpath
        if not src.is_file():
            raise DataError(f"{src}: missing from the data mirror (wanted {relpath})")
        with open(src, "rb") as f:
            yield f
        return
    full = f"{str(url).rstrip('/')}/{relpath}"
    try:
        resp = urllib.request.urlopen(full, timeout=60)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"{relpath}: cannot download {full}: {e}") from e
    with resp:
        yield resp


# --------------------------------------------------------------------------- readers


def _decode_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 file without their ``\\n`` / ``\\r\\n``; DataError on bad UTF-8."""
    data = Path(path).read_bytes()
    raw = data.split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()  # the final newline does not start another line
    lines = []
    for lineno, b in enumerate(raw, 1):
        try:
            line = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: invalid UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1})"
            ) from e
        lines.append(line[:-1] if line.endswith("\r") else line)
    return lines


def read_parallel(
    src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str]
) -> list[tuple[str, str]]:
    """Aligned (source, target) lines of two plain-text files, validated strictly."""
    columns = []
    for path in (Path(src_path), Path(tgt_path)):
        lines = _decode_lines(path)
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                raise DataError(f"{path}:{lineno}: empty or whitespace-only line")
        columns.append(lines)
    src, tgt = columns
    if len(src) != len(tgt):
        raise DataError(
            f"misaligned parallel files: {src_path} has {len(src)} lines, "
            f"{tgt_path} has {len(tgt)} lines"
        )
    return list(zip(src, tgt, strict=True))


def read_json_pairs(path: str | os.PathLike[str], src: str, tgt: str) -> list[tuple[str, str]]:
    """(src, tgt) pairs of an ALMA JSON file: a list of ``{"translation": {lang: text}}``."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from e
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    pairs = []
    for i, entry in enumerate(entries, 1):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "translation" not in entry:
            raise DataError(f"{where}: missing key 'translation'")
        tr = entry["translation"]
        if not isinstance(tr, dict):
            raise DataError(f"{where}: 'translation' must be an object, got {type(tr).__name__}")
        texts = []
        for lang in (src, tgt):
            if lang not in tr:
                raise DataError(f"{where}: missing key 'translation.{lang}'")
            value = tr[lang]
            if not isinstance(value, str):
                raise DataError(
                    f"{where}: 'translation.{lang}' must be a string, got {type(value).__name__}"
                )
            if not value.strip():
                raise DataError(f"{where}: 'translation.{lang}' is empty")
            texts.append(value)
        pairs.append((texts[0], texts[1]))
    return pairs


def load_train_pairs(root: str | os.PathLike[str], pair: str) -> list[tuple[str, str]]:
    """(xx, en) training pairs of ``pair`` below a ``human_written_data/`` root."""
    src_rel, en_rel = train_files(pair)
    return read_parallel(Path(root) / src_rel, Path(root) / en_rel)


def load_eval_pairs(
    root: str | os.PathLike[str], direction: str, split: str
) -> list[tuple[str, str]]:
    """(source, reference) pairs of a direction for ``split`` in {"valid", "test"}."""
    files = {"valid": valid_file, "test": test_file}
    if split not in files:
        raise ValueError(f"unknown split {split!r}: expected 'valid' or 'test'")
    src, tgt = split_direction(direction)
    return read_json_pairs(Path(root) / files[split](direction), src, tgt)


# --------------------------------------------------------------------------- examples


def take_slice(items: Sequence[T], max_items: int | None, seed: int) -> list[T]:
    """All items (None) or a seeded random subset of ``min(max_items, len)``, order kept."""
    if max_items is None:
        return list(items)
    if max_items < 0:
        raise ValueError(f"max_items must be >= 0 or None, got {max_items}")
    idx = sorted(random.Random(seed).sample(range(len(items)), min(max_items, len(items))))
    return [items[i] for i in idx]


def filter_by_words(
    pairs: Sequence[tuple[str, str]], max_words: int | None
) -> list[tuple[str, str]]:
    """The pairs whose two sides have at most `max_words` whitespace-separated words (None: all)."""
    if max_words is None:
        return list(pairs)
    return [(s, t) for s, t in pairs if len(s.split()) <= max_words and len(t.split()) <= max_words]


def build_train_examples(
    pairs_by_lang_pair: dict[str, list[tuple[str, str]]],
) -> list[dict[str, str]]:
    """Both directions of every (xx, en) pair: ``xx-en`` then ``en-xx``, pair after pair."""
    examples = []
    for pair, pairs in pairs_by_lang_pair.items():
        xx = _check_pair(pair)
        for xx_text, en_text in pairs:
            examples.append({"direction": f"{xx}-en", "source": xx_text, "target": en_text})
            examples.append({"direction": f"en-{xx}", "source": en_text, "target": xx_text})
    return examples


# --------------------------------------------------------------------------- JSONL


@contextlib.contextmanager
def _atomic_writer(path: Path, mode: str) -> Iterator[Any]:
    """Open a temp file next to ``path``; rename it over ``path`` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped), atomically; return count."""
    n = 0
    with _atomic_writer(Path(path), "w") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Objects of a JSONL file; DataError with file:line on bad UTF-8, JSON or non-objects."""
    path = Path(path)
    records = []
    for lineno, line in enumerate(_decode_lines(path), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        records.append(rec)
    return records
