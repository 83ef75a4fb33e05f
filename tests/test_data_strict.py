"""Data that used to be accepted and was wrong (issue 13, class 5): empty corpora that looked
prepared, control characters, stray CRs, BOMs and line separators reaching the training text, a
fetched file edited after its checksum was checked, and a download that trickled forever."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import fake_mirror as _fake_mirror
from conftest import json_file as _json
from conftest import parallel_files as _parallel
from conftest import write_bytes as _write

from sekd.data import alma as data
from sekd.errors import ConfigError, DataError
from sekd.plan.config import load_config

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "config.yaml"
MINI = ROOT / "config" / "mini.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


# --------------------------------------------------------------------------- empty sets


def test_two_empty_training_files_are_an_error(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, "", "")
    with pytest.raises(DataError) as exc:
        data.read_parallel(src, tgt)
    assert str(src) in str(exc.value) and str(tgt) in str(exc.value)
    assert "empty" in str(exc.value)


def test_one_empty_training_file_is_misaligned(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, "", "x\n")
    with pytest.raises(DataError, match="misaligned"):
        data.read_parallel(src, tgt)


@pytest.mark.parametrize("text", ["[]", "[\n]\n", "\ufeff[]"])
def test_empty_json_list_is_an_error(tmp_path: Path, text: str) -> None:
    path = _json(tmp_path, text)
    with pytest.raises(DataError, match=re.escape(f"{path}: no entries")):
        data.read_json_pairs(path, "de", "en")


PAIRS = [("a b c", "x y z"), ("a b c d", "x"), ("a", "w x y z v")]


def test_word_filter_that_keeps_nothing_names_files_and_key() -> None:
    with pytest.raises(DataError) as exc:
        data.select_train_pairs(PAIRS, ["s.de", "t.en"], max_words=2, max_pairs=None, seed=1)
    msg = str(exc.value)
    assert "s.de / t.en" in msg
    assert "data.max_train_words = 2" in msg
    assert "the shortest pair has 3" in msg


def test_slice_that_keeps_nothing_names_the_key() -> None:
    with pytest.raises(DataError, match=re.escape("data.max_train_pairs = 0")):
        data.select_train_pairs(PAIRS, ["s.de", "t.en"], max_words=None, max_pairs=0, seed=1)


def test_no_training_pairs_at_all_names_files() -> None:
    with pytest.raises(DataError, match=re.escape("s.de / t.en: no training pairs")):
        data.select_train_pairs([], ["s.de", "t.en"], max_words=None, max_pairs=None, seed=1)


def test_select_train_pairs_is_filter_then_slice() -> None:
    expected = data.take_slice(data.filter_by_words(PAIRS, 3), 1, 7)
    got = data.select_train_pairs(PAIRS, ["s", "t"], max_words=3, max_pairs=1, seed=7)
    assert got == expected and len(got) == 1


@pytest.mark.parametrize("key", ["max_valid_sentences", "max_test_sentences"])
def test_eval_slice_that_keeps_nothing_names_path_and_key(key: str) -> None:
    with pytest.raises(DataError, match=re.escape(f"v.json: no sentences left (data.{key} = 0)")):
        data.select_eval_pairs(PAIRS, "v.json", max_sentences=0, key=key, seed=1)
    assert data.select_eval_pairs(PAIRS, "v.json", max_sentences=2, key=key, seed=1) == (
        data.take_slice(PAIRS, 2, 1)
    )


def test_empty_eval_set_names_path() -> None:
    with pytest.raises(DataError, match=re.escape("v.json: no sentences")):
        data.select_eval_pairs([], "v.json", max_sentences=None, key="max_test_sentences", seed=1)


# --------------------------------------------------------------------------- characters

# (id, target file content, line, character named, column)
BAD_TEXT = [
    ("nul", "x\ny\0y\nz\n", 2, "U+0000 NUL", 2),
    ("lone cr", "x\ny\rz\nz\n", 2, "U+000D CR", 2),
    ("cr before crlf", "x\ny\r\r\nz\n", 2, "U+000D CR", 2),
    ("cr at end of file", "x\ny\nz\r", 3, "U+000D CR", 2),
    ("escape", "x\ny\nz\x1b[0m\n", 3, "U+001B ESC", 2),
    ("vertical tab", "\x0bx\ny\nz\n", 1, "U+000B", 1),
    ("form feed", "x\ny\x0c\nz\n", 2, "U+000C", 2),
    ("del", "x\ny\nz\x7f\n", 3, "U+007F DEL", 2),
    ("c1 next line", "x\ny\u0085y\nz\n", 2, "U+0085 NEL", 2),
    ("bom inside a line", "x\ny\ufeffy\nz\n", 2, "U+FEFF BYTE ORDER MARK", 2),
    ("bom on line 2", "x\n\ufeffy\nz\n", 2, "U+FEFF BYTE ORDER MARK", 1),
    ("two boms at start", "\ufeff\ufeffx\ny\nz\n", 1, "U+FEFF BYTE ORDER MARK", 1),
    ("line separator", "x\ny\nab\u2028c\n", 3, "U+2028 LINE SEPARATOR", 3),
    ("paragraph separator", "x\u2029\ny\nz\n", 1, "U+2029 PARAGRAPH SEPARATOR", 2),
]


@pytest.mark.parametrize(
    ("content", "line", "char", "column"), [b[1:] for b in BAD_TEXT], ids=[b[0] for b in BAD_TEXT]
)
def test_bad_character_names_file_line_and_character(
    tmp_path: Path, content: str, line: int, char: str, column: int
) -> None:
    src, tgt = _parallel(tmp_path, "a\nb\nc\n", content)
    with pytest.raises(DataError) as exc:
        data.read_parallel(src, tgt)
    msg = str(exc.value)
    assert msg.startswith(f"{tgt}:{line}: {char}"), msg
    assert f"at column {column}" in msg


def test_stray_cr_is_called_one(tmp_path: Path) -> None:
    src, tgt = _parallel(tmp_path, "a\rb\n", "x\n")
    with pytest.raises(DataError, match="carriage return that does not end a CRLF line"):
        data.read_parallel(src, tgt)


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("\ufeffa\nb\n", ["a", "b"]),  # a leading UTF-8 BOM is an encoding signature: dropped
        ("a\r\nb\r\n", ["a", "b"]),  # CRLF throughout
        ("a\r\nb", ["a", "b"]),  # CRLF, last line unterminated
        ("a\tb\nc\u200bd\n", ["a\tb", "c\u200bd"]),  # TAB and a zero-width space are text
        ("\ufeffa\r\nb\n", ["a", "b"]),
    ],
)
def test_accepted_text(tmp_path: Path, src: str, expected: list[str]) -> None:
    paths = _parallel(tmp_path, src, "x\ny\n")
    assert [s for s, _ in data.read_parallel(*paths)] == expected


def _entries_text(*pairs: tuple[str, str]) -> str:
    entries = [{"translation": {"de": de, "en": en}} for de, en in pairs]
    return json.dumps(entries, indent=1, ensure_ascii=False)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # raw in the file: JSON allows these inside strings
        (_entries_text(("a", "b"), ("c\u2028d", "e")), ":10: U+2028 LINE SEPARATOR at column 12"),
        (_entries_text(("a", "b\ufeff"), ("c", "e")), ":5: U+FEFF BYTE ORDER MARK"),
        # escaped in a text: named with the line the entry starts on, the entry and the key
        (
            _entries_text(("a", "b"), ("c", "d"), ("e\0", "f")),
            ":14: entry 3: 'translation.de': U+0000 NUL at column 2",
        ),
        (_entries_text(("a", "b\rc")), ":2: entry 1: 'translation.en': U+000D CR"),
        (_entries_text(("a", "b"), ("c\nd", "e")), ":8: entry 2: 'translation.de': U+000A LF"),
        (_entries_text(("a\x1b", "b")), ":2: entry 1: 'translation.de': U+001B ESC"),
        # raw control characters, which json.loads would also refuse, named the same way
        ('[{"translation": {"de": "a\0", "en": "b"}}]', ":1: U+0000 NUL at column 27"),
        ('[\n{"translation": {"de": "a", "en": "b\rc"}}]', ":2: U+000D CR"),
    ],
)
def test_json_bad_character_named(tmp_path: Path, text: str, fragment: str) -> None:
    path = _json(tmp_path, text)
    with pytest.raises(DataError) as exc:
        data.read_json_pairs(path, "de", "en")
    assert str(exc.value).startswith(str(path))
    assert fragment in str(exc.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\ufeff" + _entries_text(("a", "b")), ("a", "b")),  # leading BOM dropped (json refused it)
        (_entries_text(("a", "b")).replace("\n", "\r\n"), ("a", "b")),  # CRLF
        (_entries_text(("a\tb", "c\u200bd")), ("a\tb", "c\u200bd")),
    ],
)
def test_json_accepted(tmp_path: Path, text: str, expected: tuple[str, str]) -> None:
    assert data.read_json_pairs(_json(tmp_path, text), "de", "en") == [expected]


def test_shipped_data_passes_the_strict_readers(alma_data: Path) -> None:
    for pair in ("de-en", "cs-en"):
        src, tgt = data.train_files(pair)
        assert data.read_parallel(alma_data / src, alma_data / tgt)
        for direction in (pair, "-".join(reversed(pair.split("-")))):
            assert data.load_eval_pairs(alma_data, direction, "test")
        assert data.load_eval_pairs(alma_data, pair, "valid")


# --------------------------------------------------------------------------- edited after fetch


def test_verify_file_names_file_and_both_hashes(tmp_path: Path) -> None:
    path = _write(tmp_path / "f.txt", b"hello\n")
    good = hashlib.sha256(b"hello\n").hexdigest()
    data.verify_file(path, good)
    path.write_bytes(b"hellO\n")
    bad = hashlib.sha256(b"hellO\n").hexdigest()
    with pytest.raises(DataError) as exc:
        data.verify_file(path, good)
    msg = str(exc.value)
    assert msg.startswith(f"{path}: sha256 mismatch") and good in msg and bad in msg


def _snakemake(workdir: Path, target: str) -> subprocess.CompletedProcess:
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(workdir),
           "--configfile", str(MINI), "-c1", target]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)


def test_prepare_rechecks_a_fetched_file_edited_afterwards(tmp_path: Path, alma_mirror) -> None:
    target = "results/data/valid/en-de.jsonl"
    first = _snakemake(tmp_path, target)
    assert first.returncode == 0, first.stderr[-3000:]
    fetched = tmp_path / "resources/alma/deen/valid.de-en.json"
    expected = hashlib.sha256(fetched.read_bytes()).hexdigest()
    # an edit that keeps the file valid: the readers alone would accept it
    text = fetched.read_text(encoding="utf-8")
    fetched.write_text(text.replace('"de": "', '"de": "X', 1), encoding="utf-8")
    edited = hashlib.sha256(fetched.read_bytes()).hexdigest()
    (tmp_path / target).unlink()
    second = _snakemake(tmp_path, target)
    assert second.returncode != 0
    log = (tmp_path / "results/logs/prepare_eval/valid/en-de.log").read_text(encoding="utf-8")
    for text in ("resources/alma/deen/valid.de-en.json: sha256 mismatch", expected, edited):
        assert text in log
    assert not (tmp_path / target).exists()


# --------------------------------------------------------------------------- download deadline

SLOW_BODY = b"hello\n" * 40


class _SlowHandler(http.server.BaseHTTPRequestHandler):
    """Serves SLOW_BODY: at full speed for /fast/*, one byte a second for /trickle/*, only the
    headers for /stall/*, the first 10 bytes for /cut/*, and headers that never end, one byte a
    second, for /headers/*."""

    def do_GET(self) -> None:
        if self.path.startswith("/headers/"):
            self._trickle_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(SLOW_BODY)))
        self.end_headers()
        self.wfile.flush()
        try:
            if self.path.startswith("/fast/"):
                self.wfile.write(SLOW_BODY)
            elif self.path.startswith("/cut/"):
                self.wfile.write(SLOW_BODY[:10])  # then the connection closes
            elif self.path.startswith("/trickle/"):
                for i in range(len(SLOW_BODY)):
                    self.wfile.write(SLOW_BODY[i : i + 1])
                    self.wfile.flush()
                    time.sleep(1)
            else:
                time.sleep(6)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _trickle_headers(self) -> None:
        """A status line, then a header one byte a second, for 30 s."""
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(30):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(1)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    """Base URL of a local HTTP server (127.0.0.1 only) running in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SlowHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


SHA_OF_BODY = hashlib.sha256(SLOW_BODY).hexdigest()


def test_download_at_full_speed(tmp_path: Path, slow_server: str) -> None:
    dest = tmp_path / "out/f.txt"
    data.fetch_file("deen/f.txt", dest, url=f"{slow_server}/fast", sha256=SHA_OF_BODY, timeout_s=5)
    assert dest.read_bytes() == SLOW_BODY


@pytest.mark.parametrize("kind", ["trickle", "stall", "headers"])
def test_slow_download_stops_at_the_deadline(tmp_path: Path, slow_server: str, kind: str) -> None:
    dest = tmp_path / "out/f.txt"
    start = time.monotonic()
    with pytest.raises(DataError) as exc:
        data.fetch_file(
            "deen/f.txt", dest, url=f"{slow_server}/{kind}", sha256=SHA_OF_BODY, timeout_s=3
        )
    elapsed = time.monotonic() - start
    assert elapsed < 3 + 2, elapsed  # the 240 bytes would take 4 minutes
    assert f"{slow_server}/{kind}/deen/f.txt" in str(exc.value)
    assert sorted(p.name for p in dest.parent.iterdir()) == []  # no partial file left


def test_cut_connection_names_the_url(tmp_path: Path, slow_server: str) -> None:
    dest = tmp_path / "out/f.txt"
    message = f"{slow_server}/cut/deen/f.txt: download failed: got 10 of 240 bytes"
    with pytest.raises(DataError, match=re.escape(message)):
        data.fetch_file("deen/f.txt", dest, url=f"{slow_server}/cut", sha256=SHA_OF_BODY)
    assert sorted(p.name for p in dest.parent.iterdir()) == []


def test_trickle_names_the_deadline_key(tmp_path: Path, slow_server: str) -> None:
    with pytest.raises(DataError, match=r"not complete after 2 s \(data.download_timeout_s\)"):
        data.fetch_file(
            "deen/f.txt", tmp_path / "f.txt", url=f"{slow_server}/trickle", sha256=SHA_OF_BODY,
            timeout_s=2,
        )  # fmt: skip


@pytest.mark.parametrize("timeout", [0, -1.0])
def test_download_timeout_must_be_positive(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match="download timeout"):
        data.fetch_file("deen/f.txt", tmp_path / "f", url="http://127.0.0.1:9", sha256=SHA_OF_BODY,
                        timeout_s=timeout)  # fmt: skip


def test_download_timeout_in_the_config(tmp_path: Path) -> None:
    assert load_config(PAPER)["data"]["download_timeout_s"] == 300
    path = _write(tmp_path / "c.yaml", "data: {download_timeout_s: 20}\n")
    assert load_config(PAPER, path)["data"]["download_timeout_s"] == 20
    for bad in ("0", "2.5", "'60'"):
        _write(path, f"data: {{download_timeout_s: {bad}}}\n")
        with pytest.raises(ConfigError, match=re.escape("data.download_timeout_s")):
            load_config(PAPER, path)


def test_fetch_job_stops_at_the_configured_deadline(tmp_path: Path, slow_server: str) -> None:
    """data.download_timeout_s reaches the fetch job: a trickling upstream fails it in time."""
    config = _write(
        tmp_path / "c.yaml", f"data: {{url: '{slow_server}/trickle', download_timeout_s: 2}}\n"
    )
    relpath = "deen/valid.de-en.json"
    env = {k: v for k, v in os.environ.items() if k != "SEKD_DATA_MIRROR"}
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path / "w"),
           "--configfile", str(MINI), str(config), "-c1", f"resources/alma/{relpath}"]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
    log = (tmp_path / f"w/results/logs/fetch_data/{relpath}.log").read_text(encoding="utf-8")
    assert f"{slow_server}/trickle/{relpath}: download timed out: not complete after 2 s" in log
    assert not (tmp_path / f"w/resources/alma/{relpath}").exists()


# --------------------------------------------------------------------------- the prepare jobs


def _run_prepare(tmp_path: Path, config_text: str, target: str) -> tuple[int, str]:
    """Run snakemake for one prepared data file; (return code, the job's log)."""
    config = _write(tmp_path / "c.yaml", config_text)
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "workflow" / "Snakefile"), "-d", str(tmp_path / "w"),
           "--configfile", str(MINI), str(config), "-c1", target]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ}, timeout=300)
    log = tmp_path / "w/results/logs" / target.replace("results/data/train/", "prepare_train/")
    log = log.with_suffix(".log")
    return proc.returncode, log.read_text(encoding="utf-8") if log.exists() else proc.stderr


def _mirror_config(tmp_path: Path, files: dict[str, bytes]) -> str:
    """A data mirror holding ``files`` (by path below human_written_data/) and the config text
    that fetches them from it; every other file the plan reads is there empty (the plan checks
    that a local mirror holds them all)."""
    mirror = _fake_mirror(tmp_path / "mirror", load_config(PAPER, environ={})["data"]["sha256"])
    lines = [f"data:\n  mirror: {mirror}\n  sha256:\n"]
    for rel, content in files.items():
        path = mirror / "human_written_data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        lines.append(f"    {rel}: {hashlib.sha256(content).hexdigest()}\n")
    return "".join(lines)


TRAIN = ("deen/train.de-en.de", "deen/train.de-en.en")
NAMES = "resources/alma/deen/train.de-en.de / resources/alma/deen/train.de-en.en"


def test_prepare_train_stops_on_two_empty_files(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SEKD_DATA_MIRROR", raising=False)
    config = _mirror_config(tmp_path, dict.fromkeys(TRAIN, b""))
    rc, log = _run_prepare(tmp_path, config, "results/data/train/de-en.jsonl")
    assert rc != 0
    assert "resources/alma/deen/train.de-en.de and resources/alma/deen/train.de-en.en" in log
    assert "are both empty" in log
    assert not (tmp_path / "w/results/data/train/de-en.jsonl").exists()


def test_prepare_train_names_the_filter_that_kept_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SEKD_DATA_MIRROR", raising=False)
    config = _mirror_config(
        tmp_path, dict(zip(TRAIN, [b"a b c\nd e\n", b"x y\nu v w\n"], strict=True))
    )
    config += "  max_train_words: 2\n"
    rc, log = _run_prepare(tmp_path, config, "results/data/train/de-en.jsonl")
    assert rc != 0
    assert f"{NAMES}: none of the 2 training pairs has at most 2 words" in log
    assert "data.max_train_words = 2" in log
    assert not (tmp_path / "w/results/data/train/de-en.jsonl").exists()


def test_prepare_train_stops_at_a_nul(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SEKD_DATA_MIRROR", raising=False)
    config = _mirror_config(tmp_path, dict(zip(TRAIN, [b"a b\nc\x00d\n", b"x\ny\n"], strict=True)))
    rc, log = _run_prepare(tmp_path, config, "results/data/train/de-en.jsonl")
    assert rc != 0
    assert "resources/alma/deen/train.de-en.de:2: U+0000 NUL at column 2" in log
    assert not (tmp_path / "w/results/data/train/de-en.jsonl").exists()
