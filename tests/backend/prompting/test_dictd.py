"""The dictd reader on a dictionary written here (known offsets) and on Debian's dictzip-compressed FreeDict files."""

from __future__ import annotations

from pathlib import Path

import pytest
from alch3mist.prompting.dictd import DictdDictionary, parse_entry

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _b64(number: int) -> str:
    digits = ""
    while True:
        digits = _B64[number % 64] + digits
        number //= 64
        if not number:
            return digits


def test_plain_dictionary_offsets_and_senses(tmp_path: Path) -> None:
    entries = {"vaca": "vaca /bˈaka/\ncow\n", "piel": "piel /pjˈel/\n1. fur, hide, skin\n2. fur coat\n"}
    data, index = b"", []
    for word, text in entries.items():
        raw = text.encode()
        index.append(f"{word}\t{_b64(len(data))}\t{_b64(len(raw))}")
        data += raw
    (tmp_path / "test.dict").write_bytes(data)
    (tmp_path / "test.index").write_text("\n".join(index) + "\n", encoding="utf-8")
    dictionary = DictdDictionary.named(tmp_path, "test")
    assert [s.translations for s in dictionary.lookup("Piel")[0].senses] == [("fur", "hide", "skin"), ("fur coat",)]
    assert dictionary.lookup("vaca")[0].senses[0].translations == ("cow",)
    assert dictionary.lookup("toro") == []
    with pytest.raises(FileNotFoundError, match=r"absent\.index"):
        DictdDictionary.named(tmp_path, "absent")


def test_entry_formats_of_freedict() -> None:
    ding = parse_entry(" Moos /mˈoːs/ <neut, n, sg>\n [bot.] moss plant <n>, moss <n>\n   Synonym: {Moospflanze}\n")
    assert ding.senses[0].translations == ("moss plant", "moss")
    assert "[bot.]" in ding.senses[0].pos and "n" in ding.pos
    polish = parse_entry("złoto /ˈzwɔtɔ/ <n>\ngold 2.\n(chemia) pierwiastek chemiczny;\n 3.\nstop zawierający złoto\n")
    assert [s.translations for s in polish.senses] == [("gold",)]  # Polish definitions are not translations
    spanish = parse_entry("búho /bˈuo/ <n, m>\nUhu <n, m>\n")
    assert spanish.senses[0].translations == ("Uhu",)  # the comma inside <n, m> splits nothing


def test_dictzip_random_access_in_the_installed_german_dictionary() -> None:
    """scripts/install-system-deps.sh installs dict-freedict-deu-eng (95 MB uncompressed, read chunk by chunk)."""
    dictionary = DictdDictionary.named(Path("/usr/share/dictd"), "freedict-deu-eng")
    assert "cow" in {t for e in dictionary.lookup("Kuh") for s in e.senses for t in s.translations}
    assert "molten" in {t for e in dictionary.lookup("geschmolzen") for s in e.senses for t in s.translations}
