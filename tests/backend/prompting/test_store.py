"""The look-up index store: built once into the cache folder, reopened without a build, rebuilt when a source
changes, in memory without a folder or when the folder cannot be written."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from alch3mist.prompting.dictd import DictdDictionary
from alch3mist.prompting.store import SCHEMA_VERSION, IndexStore


class CountingBuild:
    """A build function that records how often it ran and copies the source's lines into a table."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.runs = 0

    def __call__(self, connection: sqlite3.Connection) -> None:
        self.runs += 1
        connection.execute("CREATE TABLE line (text TEXT)")
        lines = self.source.read_text(encoding="utf-8").splitlines()
        connection.executemany("INSERT INTO line VALUES (?)", [(line,) for line in lines])


def _lines(store: IndexStore, source: Path, build: CountingBuild) -> list[str]:
    return [row[0] for row in store.open("lines", [source], build).rows("SELECT text FROM line ORDER BY rowid")]


def test_built_once_then_read_from_disk(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("gold\nsilver\n", encoding="utf-8")
    build = CountingBuild(source)
    store = IndexStore(tmp_path / "cache")
    assert _lines(store, source, build) == ["gold", "silver"]
    assert (tmp_path / "cache" / f"lines.v{SCHEMA_VERSION}.sqlite").is_file()
    assert _lines(IndexStore(tmp_path / "cache"), source, build) == ["gold", "silver"]  # a later process
    assert build.runs == 1
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"lines.v{SCHEMA_VERSION}.sqlite"]  # no temp left


def test_rebuilt_when_the_source_changes(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("gold\n", encoding="utf-8")
    build = CountingBuild(source)
    store = IndexStore(tmp_path / "cache")
    assert _lines(store, source, build) == ["gold"]
    source.write_text("gold\nbronze\n", encoding="utf-8")  # an updated Debian package
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert _lines(store, source, build) == ["gold", "bronze"]
    assert build.runs == 2


def test_a_damaged_index_is_rebuilt(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("gold\n", encoding="utf-8")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / f"lines.v{SCHEMA_VERSION}.sqlite").write_bytes(b"not a database")
    build = CountingBuild(source)
    assert _lines(IndexStore(tmp_path / "cache"), source, build) == ["gold"]
    assert build.runs == 1


def test_in_memory_without_a_folder_or_a_writable_one(tmp_path: Path) -> None:
    source = tmp_path / "source.txt"
    source.write_text("gold\n", encoding="utf-8")
    build = CountingBuild(source)
    assert _lines(IndexStore(None), source, build) == ["gold"]
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder should be", encoding="utf-8")
    assert _lines(IndexStore(blocked / "lexicon"), source, build) == ["gold"]
    assert build.runs == 2


@pytest.mark.parametrize("cached", [True, False])
def test_dictionary_index_through_the_store(tmp_path: Path, cached: bool) -> None:
    """The dictd index copied into SQLite answers like the text index: case-folded keys, entries in order."""
    text = "vaca /bˈaka/\ncow\n"
    extra = "vaca\nheifer\n"
    data = (text + extra).encode()
    index = f"vaca\tA\t{_b64(len(text.encode()))}\nVaca\t{_b64(len(text.encode()))}\t{_b64(len(extra))}\n"
    (tmp_path / "test.dict").write_bytes(data)
    (tmp_path / "test.index").write_text(index, encoding="utf-8")
    store = IndexStore(tmp_path / "cache" if cached else None)
    dictionary = DictdDictionary.named(tmp_path, "test", store)
    assert [e.senses[0].translations for e in dictionary.lookup("VACA")] == [("cow",), ("heifer",)]
    assert "vaca" in dictionary and "toro" not in dictionary
    assert [e.headword for e in dictionary.entries()] == ["vaca", "vaca"]
    assert (tmp_path / "cache" / f"test.v{SCHEMA_VERSION}.sqlite").is_file() == cached


def _b64(number: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    digits = ""
    while True:
        digits = alphabet[number % 64] + digits
        number //= 64
        if not number:
            return digits
