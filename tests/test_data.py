"""sekd.data.alma: path conventions, strict readers, fetching with checksums, example building."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import json_file as _json
from conftest import parallel_files as _parallel
from conftest import write_bytes as _write

from sekd.data import alma as data
from sekd.errors import DataError

# --------------------------------------------------------------------------- keys and paths


def test_path_conventions() -> None:
    assert data.pair_of("de-en") == "de-en"
    assert data.pair_of("en-cs") == "cs-en"
    assert data.train_files("de-en") == ("deen/train.de-en.de", "deen/train.de-en.en")
    assert data.valid_file("en-de") == "deen/valid.de-en.json"
    assert data.valid_file("cs-en") == "csen/valid.cs-en.json"
    assert data.test_file("en-de") == "deen/test.en-de.json"
    assert data.test_file("cs-en") == "csen/test.cs-en.json"


@pytest.mark.parametrize("key", ["de", "de-fr", "en-en", "DE-en", "deu_en", "d-en", "de-en-x", ""])
def test_invalid_direction_named(key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        data.pair_of(key)


def test_train_files_wants_xx_en() -> None:
    with pytest.raises(ValueError, match="'en-de'"):
        data.train_files("en-de")


# --------------------------------------------------------------------------- malformed files


def _entries(*translations: object) -> str:
    return json.dumps([{"translation": t} for t in translations], indent=1)


OK = {"de": "Hallo", "en": "Hello"}

# (name, reader, expected fragments after the file path)
MALFORMED = [
    ("misaligned", lambda p: data.read_parallel(*_parallel(p, "a\nb\nc\n", "x\ny\n")), "3 lines"),
    ("empty source", lambda p: data.read_parallel(*_parallel(p, "a\n\nc\n", "x\ny\nz\n")), ":2:"),
    (
        "whitespace target",
        lambda p: data.read_parallel(*_parallel(p, "a\nb\nc\n", "x\ny\n \t\n")),
        ":3:",
    ),
    (
        "bad utf-8",
        lambda p: data.read_parallel(*_parallel(p, "a\nb\nc\n", b"x\ny\nz\xff\n")),
        ":3:",
    ),
    (
        "invalid json",
        lambda p: data.read_json_pairs(_json(p, '[\n{"a": 1},\n{'), "de", "en"),
        ":3:",
    ),
    (
        "json bad utf-8",
        lambda p: data.read_json_pairs(_json(p, b'[\n"\xc3\x28"\n]'), "de", "en"),
        ":2:",
    ),
    ("json not a list", lambda p: data.read_json_pairs(_json(p, '{"a": 1}'), "de", "en"), "list"),
    (
        "no translation",
        lambda p: data.read_json_pairs(
            _json(p, json.dumps([{"translation": OK}, {"x": 1}])), "de", "en"
        ),
        "entry 2",
    ),
    (
        "missing target key",
        lambda p: data.read_json_pairs(_json(p, _entries(OK, OK, {"de": "x"})), "de", "en"),
        "entry 3: missing key 'translation.en'",
    ),
    (
        "non-string value",
        lambda p: data.read_json_pairs(_json(p, _entries({"de": 5, "en": "x"})), "de", "en"),
        "entry 1: 'translation.de' must be a string",
    ),
    (
        "empty string",
        lambda p: data.read_json_pairs(_json(p, _entries(OK, {"de": "x", "en": "  "})), "de", "en"),
        "entry 2: 'translation.en' is empty",
    ),
    (
        "jsonl bad line",
        lambda p: data.read_jsonl(_write(p / "x.jsonl", '{"a": 1}\n{"a": \n')),
        ":2:",
    ),
    (
        "jsonl not object",
        lambda p: data.read_jsonl(_write(p / "x.jsonl", '{"a": 1}\n[1]\n')),
        ":2:",
    ),
]


@pytest.mark.parametrize(
    ("reader", "fragment"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_rejected(tmp_path: Path, reader, fragment: str) -> None:
    with pytest.raises(DataError) as exc:
        reader(tmp_path)
    msg = str(exc.value)
    assert str(tmp_path) in msg  # names the file
    assert fragment in msg


def test_misaligned_names_both_files(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, "a\nb\nc\n", "x\ny\n")
    with pytest.raises(DataError) as exc:
        data.read_parallel(src, tgt)
    assert f"{src} has 3 lines" in str(exc.value)
    assert f"{tgt} has 2 lines" in str(exc.value)


def test_bad_utf8_names_line(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, "a\nb\nc\n", b"x\ny\nz\xff\n")
    with pytest.raises(DataError, match="^" + re.escape(f"{tgt}:3: invalid UTF-8")):
        data.read_parallel(src, tgt)


def test_read_parallel_keeps_text(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, " a  b\r\nc\u00e4\n", "x\ty\nlast without newline")
    assert data.read_parallel(src, tgt) == [
        (" a  b", "x\ty"),
        ("c\u00e4", "last without newline"),
    ]


# --------------------------------------------------------------------------- fetching


SHA_OF_HELLO = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"  # b"hello\n"


def _fake_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    (mirror / "human_written_data/deen").mkdir(parents=True)
    (mirror / "human_written_data/deen/f.txt").write_bytes(b"hello\n")
    return mirror


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("via", ["mirror", "url"])
def test_fetch_ok(tmp_path: Path, via: str) -> None:
    mirror = _fake_mirror(tmp_path)
    src = (
        {"mirror": mirror} if via == "mirror" else {"url": (mirror / "human_written_data").as_uri()}
    )
    dest = tmp_path / "out/deen/f.txt"
    data.fetch_file("deen/f.txt", dest, sha256=SHA_OF_HELLO, **src)
    assert dest.read_bytes() == b"hello\n"
    assert _leftovers(dest.parent) == ["f.txt"]


@pytest.mark.parametrize("via", ["mirror", "url"])
def test_fetch_sha_mismatch_leaves_nothing(tmp_path: Path, via: str) -> None:
    mirror = _fake_mirror(tmp_path)
    src = (
        {"mirror": mirror} if via == "mirror" else {"url": (mirror / "human_written_data").as_uri()}
    )
    dest = tmp_path / "out/f.txt"
    with pytest.raises(DataError) as exc:
        data.fetch_file("deen/f.txt", dest, sha256="0" * 64, **src)
    msg = str(exc.value)
    assert "deen/f.txt" in msg and "0" * 64 in msg and SHA_OF_HELLO in msg
    assert _leftovers(dest.parent) == []


def test_fetch_missing_mirror_file(tmp_path: Path) -> None:
    mirror = _fake_mirror(tmp_path)
    dest = tmp_path / "out/g.txt"
    with pytest.raises(DataError, match=re.escape("human_written_data/deen/g.txt")):
        data.fetch_file("deen/g.txt", dest, mirror=mirror, sha256=SHA_OF_HELLO)
    assert _leftovers(dest.parent) == []


def test_fetch_missing_url(tmp_path: Path) -> None:
    url = (_fake_mirror(tmp_path) / "human_written_data").as_uri()
    dest = tmp_path / "out/g.txt"
    with pytest.raises(DataError, match=re.escape("deen/g.txt")):
        data.fetch_file("deen/g.txt", dest, url=url, sha256=SHA_OF_HELLO)
    assert _leftovers(dest.parent) == []


def test_verify_checksums(tmp_path: Path) -> None:
    root = _fake_mirror(tmp_path) / "human_written_data"
    data.verify_checksums(root, {"deen/f.txt": SHA_OF_HELLO})
    with pytest.raises(DataError, match=re.escape("deen/f.txt: sha256 mismatch")):
        data.verify_checksums(root, {"deen/f.txt": "1" * 64})
    with pytest.raises(DataError, match=re.escape("deen/nope.txt: missing")):
        data.verify_checksums(root, {"deen/nope.txt": SHA_OF_HELLO})


def test_read_sha256sums_bad_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "SHA256SUMS", f"{SHA_OF_HELLO}  a/b\nnot a checksum line\n")
    with pytest.raises(DataError, match=re.escape(f"{path}:2:")):
        data.read_sha256sums(path)


# --------------------------------------------------------------------------- the real mirror


def test_mirror_checksums(alma_mirror: Path, alma_data: Path) -> None:
    sha_map = data.read_sha256sums(alma_mirror / "SHA256SUMS", prefix="human_written_data/")
    assert len(sha_map) == 10
    data.verify_checksums(alma_data, sha_map)


@pytest.mark.parametrize("via", ["mirror", "url"])
def test_fetch_real_file(alma_mirror: Path, alma_data: Path, tmp_path: Path, via: str) -> None:
    sha_map = data.read_sha256sums(alma_mirror / "SHA256SUMS", prefix="human_written_data/")
    rel = data.test_file("cs-en")
    src = {"mirror": alma_mirror} if via == "mirror" else {"url": alma_data.as_uri()}
    dest = data.fetch_file(rel, tmp_path / rel, sha256=sha_map[rel], **src)
    assert len(data.read_json_pairs(dest, "cs", "en")) == 1448


def test_paper_counts(alma_data: Path) -> None:
    pairs = {p: data.load_train_pairs(alma_data, p) for p in ("de-en", "cs-en")}
    assert {p: len(v) for p, v in pairs.items()} == {"de-en": 14211, "cs-en": 12076}
    examples = data.build_train_examples(pairs)
    assert len(examples) == 52574
    counts = {
        d: sum(e["direction"] == d for e in examples) for d in ("de-en", "en-de", "cs-en", "en-cs")
    }
    assert counts == {"de-en": 14211, "en-de": 14211, "cs-en": 12076, "en-cs": 12076}

    test_sizes = {
        d: len(data.load_eval_pairs(alma_data, d, "test"))
        for d in ("de-en", "en-de", "en-cs", "cs-en")
    }
    assert test_sizes == {"de-en": 1984, "en-de": 2037, "en-cs": 2037, "cs-en": 1448}
    valid_en_de = data.load_eval_pairs(alma_data, "en-de", "valid")
    valid_de_en = data.read_json_pairs(alma_data / "deen/valid.de-en.json", "de", "en")
    assert len(valid_en_de) == 1002 == len(data.load_eval_pairs(alma_data, "cs-en", "valid"))
    assert valid_en_de[0] == (valid_de_en[0][1], valid_de_en[0][0])  # en is the source


# --------------------------------------------------------------------------- examples and JSONL


def test_build_train_examples_both_directions() -> None:
    ex = data.build_train_examples({"de-en": [("Hallo", "Hello")]})
    assert ex == [
        {"direction": "de-en", "source": "Hallo", "target": "Hello"},
        {"direction": "en-de", "source": "Hello", "target": "Hallo"},
    ]


def test_take_slice() -> None:
    items = list(range(100))
    assert data.take_slice(items, None, 0) == items
    a = data.take_slice(items, 10, seed=1)
    assert a == data.take_slice(items, 10, seed=1)
    assert a == sorted(a) and len(set(a)) == 10
    assert a != data.take_slice(items, 10, seed=2)
    assert data.take_slice(items, 1000, seed=1) == items
    assert data.take_slice(items, 0, seed=1) == []
    with pytest.raises(ValueError):
        data.take_slice(items, -1, seed=1)


def test_jsonl_roundtrip(tmp_path: Path) -> None:
    recs = [{"source": "Grüße\nzwei Zeilen", "n": 1}, {"source": "x"}]
    path = tmp_path / "sub/x.jsonl"
    assert data.write_jsonl(recs, path) == 2
    assert data.read_jsonl(path) == recs
    assert "Grüße" in path.read_text(encoding="utf-8")
    assert _leftovers(path.parent) == ["x.jsonl"]


def test_write_jsonl_failure_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(TypeError):
        data.write_jsonl([{"a": 1}, {"b": object()}], path)
    assert _leftovers(tmp_path) == []


def test_no_heavy_imports() -> None:
    code = (
        "import sys, sekd.data.alma, sekd.data.prompts; assert 'torch' not in sys.modules, 'torch'"
    )
    code += "; assert 'transformers' not in sys.modules, 'transformers'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_filter_by_words_keeps_short_pairs_in_order():
    pairs = [("a b c", "x"), ("a", "x y z w"), ("a b", "x y"), ("one", "two")]
    assert data.filter_by_words(pairs, 2) == [("a b", "x y"), ("one", "two")]
    assert data.filter_by_words(pairs, None) == pairs
    assert data.filter_by_words(pairs, 4) == pairs
