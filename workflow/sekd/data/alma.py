"""ALMA human-written parallel data: paths, fetching, strict readers and example building.

Every language pair is against English (key ``"xx-en"``, directory ``xxen/``); all paths
returned here are relative to the ``human_written_data/`` root of the ALMA repository.
No torch/transformers imports: this module is imported when the Snakefile is parsed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import random
import re
import threading
import time
import unicodedata
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sekd import atomic
from sekd.errors import DataError

T = TypeVar("T")

DATA_SUBDIR = "human_written_data"
_CODE = re.compile(r"[a-z]{2,3}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
_READ_TIMEOUT_S = 60.0  # the longest a download may wait for its next bytes
DEFAULT_DOWNLOAD_TIMEOUT_S = 300.0  # the longest a whole download may take (schema default)
_UTF8_BOM = b"\xef\xbb\xbf"
# Characters that never belong inside a sentence: C0 controls but TAB (a CR is allowed only as
# the CR of a CRLF line ending, a LF only as a line ending), DEL, C1 controls, a byte order mark
# past the start of the file, and the Unicode line and paragraph separators.
_BAD_CHAR = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\ufeff\u2028\u2029]")
_CONTROL_NAMES = {0x00: "NUL", 0x0A: "LF", 0x0D: "CR", 0x1B: "ESC", 0x7F: "DEL", 0x85: "NEL"}


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


# Validation directions whose ALMA file is another WMT21 direction read in reverse (issue 11, open
# choice 7c; docs/reproduction.md): ALMA's valid.cs-en.json is WMT21 en-cs, so read as cs-en its
# sources are Czech translations of English originals (translationese) and its references the
# originals. The mirror holds no other WMT21 cs-en file, so there is no switch: a warning instead.
REVERSED_VALID = {"cs-en": "WMT21 en-cs"}


def reversed_valid_warning(direction: str) -> str | None:
    """The warning of a validation direction read from the reverse WMT21 direction, else None."""
    origin = REVERSED_VALID.get(direction)
    if origin is None:
        return None
    return (
        f"valid {direction}: ALMA's {valid_file(direction)} is {origin} read in reverse; its "
        f"{split_direction(direction)[0]} sources are translations of English originals "
        "(translationese), so validation in this direction is easier than a source-original "
        "test set (docs/reproduction.md, open choice 7c)"
    )


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


def verify_file(path: str | os.PathLike[str], expected: str) -> None:
    """Check a fetched file against its ``data.sha256`` entry again before a job reads it
    (the fetch checked it once; an edit since then must not pass): DataError naming the file
    and both hashes."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise DataError(
            f"{path}: sha256 mismatch: the file changed after it was fetched "
            f"(data.sha256 expects {expected}, the file has {actual}); delete it to fetch it again"
        )


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
    timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Fetch ``relpath`` (below ``human_written_data/``) to ``dest`` and verify its sha256.

    Copies ``mirror/human_written_data/relpath`` when ``mirror`` is given, else downloads
    ``url + "/" + relpath`` (any urllib URL, ``file://`` included) once, without retrying
    (a scheduler's restarts are the only retries). A download waits at most
    ``min(60 s, timeout_s)`` for its next bytes and stops with a DataError naming the URL once
    ``timeout_s`` seconds have passed in all (``data.download_timeout_s``), however slowly bytes
    trickle in, headers included (the fetch runs in a thread the caller stops waiting for).
    Writes a temp file next to ``dest`` and renames it into place only after the checksum
    matches, so a failure leaves neither ``dest`` nor the temp file behind.
    """
    _check_relpath(relpath)
    if not _SHA256.fullmatch(sha256.lower()):
        raise ValueError(f"{relpath}: invalid sha256 {sha256!r}")
    if mirror is None and url is None:
        raise ValueError(f"{relpath}: neither a mirror nor a URL to fetch from")
    if not timeout_s > 0:
        raise ValueError(f"{relpath}: download timeout must be > 0 s, got {timeout_s!r}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    name = _source_name(relpath, url, mirror)
    deadline = time.monotonic() + timeout_s
    with atomic.replacing(dest) as tmp:
        # Opened here, closed by the download: one still running after the timeout writes
        # to a file already removed.
        sink = open(tmp, "wb")  # noqa: SIM115

        def download() -> str:
            with sink as out, _open_source(relpath, url, mirror, timeout_s) as src:
                return _copy_hashed(src, out, deadline, name, timeout_s)

        actual = _call_by(download, deadline, _timed_out(name, timeout_s))
        if actual != sha256.lower():
            raise DataError(f"{relpath}: sha256 mismatch: expected {sha256}, got {actual}")
    return dest


def _source_name(relpath: str, url: str | None, mirror: str | os.PathLike[str] | None) -> str:
    """The mirror file or the URL ``relpath`` is fetched from (for messages)."""
    if mirror is not None:
        return str(Path(mirror) / DATA_SUBDIR / relpath)
    return f"{str(url).rstrip('/')}/{relpath}"


def _timed_out(name: str, timeout_s: float) -> DataError:
    """The error of a download past its deadline."""
    return DataError(
        f"{name}: download timed out: not complete after {timeout_s:g} s (data.download_timeout_s)"
    )


def _call_by(fn: Callable[[], T], deadline: float, error: Exception) -> T:
    """``fn()``, run in a daemon thread: its result or its exception, or ``error`` once
    ``time.monotonic()`` passes ``deadline`` (plus a second's grace for ``fn``'s own message).

    This bounds what no read timeout bounds: a server that trickles its headers, or a name
    lookup that hangs. A thread left behind ends at its next read timeout or with the process.
    """
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # handed to the caller
            outcome["error"] = e

    thread = threading.Thread(target=run, name="sekd-fetch", daemon=True)
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
    if thread.is_alive():
        raise error
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _copy_hashed(src: Any, out: Any, deadline: float, name: str, timeout_s: float) -> str:
    """Copy ``src`` to ``out`` and return the sha256 of what was copied; DataError naming
    ``name`` once ``time.monotonic()`` passes ``deadline`` or a read times out.

    Reads with ``read1`` where the stream has it (one network read at a time), so bytes that
    trickle in cannot keep a single call busy past the deadline.
    """
    read = getattr(src, "read1", src.read)
    expected = _content_length(src)
    h = hashlib.sha256()
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise _timed_out(name, timeout_s)
        try:
            chunk = read(_CHUNK)
        except (OSError, http.client.HTTPException) as e:  # a read timeout, a cut connection
            raise DataError(f"{name}: download failed: {e!r}") from e
        if not chunk:
            break
        h.update(chunk)
        out.write(chunk)
        size += len(chunk)
    if expected is not None and size != expected:
        raise DataError(f"{name}: download failed: got {size} of {expected} bytes")
    return h.hexdigest()


def _content_length(src: Any) -> int | None:
    """The Content-Length an HTTP response announced, if any."""
    headers = getattr(src, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    return int(value) if value is not None and value.strip().isdigit() else None


@contextlib.contextmanager
def _open_source(
    relpath: str,
    url: str | None,
    mirror: str | os.PathLike[str] | None,
    timeout_s: float = DEFAULT_DOWNLOAD_TIMEOUT_S,
) -> Iterator:
    """Binary stream of the file to fetch, from the mirror or the URL."""
    if mirror is not None:
        src = Path(mirror) / DATA_SUBDIR / relpath
        if not src.is_file():
            raise DataError(f"{src}: missing from the data mirror (wanted {relpath})")
        with open(src, "rb") as f:
            yield f
        return
    full = _source_name(relpath, url, None)
    try:
        resp = urllib.request.urlopen(full, timeout=min(_READ_TIMEOUT_S, timeout_s))
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise DataError(f"{relpath}: cannot download {full}: {e}") from e
    with resp:
        yield resp


# --------------------------------------------------------------------------- readers


def describe_char(ch: str) -> str:
    """``"U+0000 NUL"``, ``"U+2028 LINE SEPARATOR"``, ``"U+FEFF BYTE ORDER MARK"``: a character
    named for an error message."""
    code = ord(ch)
    if code == 0xFEFF:
        name = "BYTE ORDER MARK"
    elif code in _CONTROL_NAMES:
        name = _CONTROL_NAMES[code]
    else:
        name = unicodedata.name(ch, "control character")
    return f"U+{code:04X} {name}"


def check_text(text: str, where: str) -> None:
    """DataError ``"<where>: U+0000 NUL at column 3"`` if ``text`` holds a character that
    never belongs inside a sentence (see ``_BAD_CHAR``); a stray CR is called one."""
    m = _BAD_CHAR.search(text)
    if m is None:
        return
    what = describe_char(m.group())
    if m.group() == "\r":
        what += " (a carriage return that does not end a CRLF line)"
    raise DataError(f"{where}: {what} at column {m.start() + 1}")


def _decode_lines(path: Path, *, strict: bool = False) -> list[str]:
    """Lines of a UTF-8 file without their ``\\n`` / ``\\r\\n``; DataError on bad UTF-8.

    ``strict`` (the corpus readers): a UTF-8 byte order mark at the very start of the file is
    dropped (an encoding signature some editors write, not text), and a line holding any other
    BOM, a NUL or other control character but TAB, a CR that is not part of a CRLF line ending
    (a file may mix LF and CRLF endings), or U+2028/U+2029 is a DataError naming file:line,
    the character and its column.
    """
    data = Path(path).read_bytes()
    if strict and data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    raw = data.split(b"\n")
    terminated = raw[-1] == b""
    if terminated:
        raw.pop()  # the final newline does not start another line
    lines = []
    for lineno, b in enumerate(raw, 1):
        try:
            line = b.decode("utf-8")
        except UnicodeDecodeError as e:
            raise DataError(
                f"{path}:{lineno}: invalid UTF-8 (byte 0x{b[e.start]:02x} at column {e.start + 1})"
            ) from e
        ends_crlf = line.endswith("\r") and (terminated or lineno < len(raw) or not strict)
        line = line[:-1] if ends_crlf else line
        if strict:
            check_text(line, f"{path}:{lineno}")
        lines.append(line)
    return lines


def read_parallel(
    src_path: str | os.PathLike[str], tgt_path: str | os.PathLike[str]
) -> list[tuple[str, str]]:
    """Aligned (source, target) lines of two plain-text files, validated strictly.

    Every line must be non-blank and free of control characters (see ``_decode_lines``, which
    drops a leading UTF-8 BOM); two empty files are an error, not an empty corpus.
    """
    columns = []
    for path in (Path(src_path), Path(tgt_path)):
        lines = _decode_lines(path, strict=True)
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
    if not src:
        raise DataError(f"no sentence pairs: {src_path} and {tgt_path} are both empty")
    return list(zip(src, tgt, strict=True))


def _entry_line(text: str, index: int) -> int:
    """The line on which entry ``index`` (0-based) of the JSON list ``text`` starts (named in
    the error about a character escaped in one of its texts)."""
    decoder = json.JSONDecoder()
    space = re.compile(r"[ \t\n\r]*")
    pos = space.match(text, 0).end() + 1  # past "["
    for _ in range(index):
        pos = space.match(text, pos).end()
        _, pos = decoder.raw_decode(text, pos)
        pos = space.match(text, pos).end() + 1  # past ","
    return text.count("\n", 0, space.match(text, pos).end()) + 1


def _check_json_lines(path: Path, text: str) -> None:
    """The characters of a JSON file, line by line, as ``_decode_lines(strict=True)`` checks
    them (JSON itself allows a raw BOM, U+2028 and U+2029 inside strings)."""
    lines = text.split("\n")
    for lineno, line in enumerate(lines, 1):
        ends_crlf = line.endswith("\r") and lineno < len(lines)
        check_text(line[:-1] if ends_crlf else line, f"{path}:{lineno}")


def read_json_pairs(path: str | os.PathLike[str], src: str, tgt: str) -> list[tuple[str, str]]:
    """(src, tgt) pairs of an ALMA JSON file: a list of ``{"translation": {lang: text}}``.

    A UTF-8 BOM at the very start of the file is dropped; a control character, BOM or line
    separator elsewhere in the file, raw or escaped in a text (``"\\u0000"``), is a DataError
    naming file:line and the character; a file without entries is an error too.
    """
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x})") from e
    _check_json_lines(path, text)
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from e
    if not isinstance(entries, list):
        raise DataError(f"{path}: expected a JSON list of entries, got {type(entries).__name__}")
    if not entries:
        raise DataError(f"{path}: no entries (an empty JSON list)")
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
            if _BAD_CHAR.search(value):
                line = _entry_line(text, i - 1)
                check_text(value, f"{path}:{line}: entry {i}: 'translation.{lang}'")
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


def select_train_pairs(
    pairs: Sequence[tuple[str, str]],
    files: Sequence[str | os.PathLike[str]],
    *,
    max_words: int | None,
    max_pairs: int | None,
    seed: int,
) -> list[tuple[str, str]]:
    """The training pairs a job keeps (§4.1): those within ``data.max_train_words``, then a
    seeded slice of ``data.max_train_pairs``; DataError naming ``files`` and the config key
    when nothing is left, so that an empty corpus never looks like a prepared one."""
    names = " / ".join(str(f) for f in files)
    if not pairs:
        raise DataError(f"{names}: no training pairs")
    kept = filter_by_words(pairs, max_words)
    if not kept:
        shortest = min(max(len(s.split()), len(t.split())) for s, t in pairs)
        raise DataError(
            f"{names}: none of the {len(pairs)} training pairs has at most {max_words} words on "
            f"both sides (data.max_train_words = {max_words}; the shortest pair has {shortest})"
        )
    sliced = take_slice(kept, max_pairs, seed)
    if not sliced:
        raise DataError(f"{names}: no training pairs left (data.max_train_pairs = {max_pairs})")
    return sliced


def select_eval_pairs(
    pairs: Sequence[tuple[str, str]],
    path: str | os.PathLike[str],
    *,
    max_sentences: int | None,
    key: str,
    seed: int,
) -> list[tuple[str, str]]:
    """A seeded slice of ``max_sentences`` (config key ``data.<key>``) of an evaluation set;
    DataError naming ``path`` and the key when nothing is left."""
    if not pairs:
        raise DataError(f"{path}: no sentences")
    sliced = take_slice(pairs, max_sentences, seed)
    if not sliced:
        raise DataError(f"{path}: no sentences left (data.{key} = {max_sentences})")
    return sliced


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


def write_jsonl(records: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write one JSON object per line (UTF-8, not ASCII-escaped), atomically; return count."""
    n = 0
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic.replacing(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
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
