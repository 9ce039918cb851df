"""The on-disk format of a LoRA dataset folder: its file names and the record of each pair.

Read by the trainer, the evaluation and the ai-toolkit export; written by ``alch3mist dataset build``. Kept apart
from the builder so that readers of a dataset never import the code that makes one.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from ..errors import DatasetError

__all__ = [
    "INFO_FILE",
    "ORIGINALS",
    "TEST_FILE",
    "TRAIN_FILE",
    "TRANSFORMED",
    "PairRecord",
    "read_jsonl",
    "read_records",
    "read_test_records",
    "write_jsonl",
]

ORIGINALS, TRANSFORMED = "img0", "img1"
TRAIN_FILE, TEST_FILE, INFO_FILE = "metadata.jsonl", "test.jsonl", "dataset.json"


@dataclass
class PairRecord:
    """One line of ``metadata.jsonl`` (images set) or ``test.jsonl`` (images unset for generated datasets)."""

    id: str
    caption: str
    edit_prompt: str
    base_prompt: str | None = None
    object: str | None = None
    material: str | None = None
    family: str | None = None
    seed: int | None = None
    original: str | None = None  # the Kontext input, relative to the dataset folder
    transformed: str | None = None  # the training target, relative to the dataset folder
    source: str = "generated"

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> PairRecord:
        data = json.loads(line)
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


def write_jsonl(path: Path, records: list[PairRecord]) -> None:
    """Write the records atomically (a crash leaves the previous file, never half of one)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(record.to_json() + "\n" for record in records), encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path) -> list[PairRecord]:
    """The records of a ``.jsonl`` file; none when it does not exist."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                records.append(PairRecord.from_json(line))
            except (json.JSONDecodeError, TypeError) as error:
                raise DatasetError(f"{path}:{number} is not a valid record: {error}") from error
    return records


def read_records(data_dir: Path) -> list[PairRecord]:
    """The training pairs of a dataset folder, checked to exist on disk."""
    path = data_dir / TRAIN_FILE
    if not path.is_file():
        raise DatasetError(
            f"{data_dir} is not a dataset folder (no {TRAIN_FILE}); build one with 'alch3mist dataset build'"
        )
    records = read_jsonl(path)
    for record in records:
        for rel in (record.original, record.transformed):
            if rel is None or not (data_dir / rel).is_file():
                raise DatasetError(f"{data_dir}: pair {record.id} names a missing image {rel}")
    if not records:
        raise DatasetError(f"{data_dir} holds no training pairs")
    return records


def read_test_records(data_dir: Path) -> list[PairRecord]:
    """The held-out prompts of a dataset folder (may be empty)."""
    return read_jsonl(data_dir / TEST_FILE)
