"""``run_job``: one job on a loaded chain in this process (what a distributed worker calls), on the tiny chain."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from alch3mist.jobs.runner import JobUpdate, run_job
from alch3mist.jobs.store import JobRecord, new_job_id

FAST = {"request": "a cow with crocodile skin", "seed": 7, "steps": 2, "edit_steps": 2, "views": 0}


def _running(params: dict[str, Any]) -> JobRecord:
    return JobRecord(id=new_job_id(), status="running", params=dict(params))


def test_run_job_reports_every_step_and_finishes_the_record(tiny_chain: Any, tmp_path: Path) -> None:
    updates: list[JobUpdate] = []
    record = run_job(_running(FAST), tmp_path, tiny_chain, updates.append, threading.Event())

    assert record.status == "succeeded" and record.error is None and record.progress == 1.0
    assert record.seed == 7 and record.prompt is not None and record.manifest is not None
    assert record.artifacts[:2] == ["base.png", "textured.png"] and "manifest.json" in record.artifacts
    assert all((tmp_path / name).is_file() for name in record.artifacts)
    stages = [update.job.stage for update in updates if update.type == "stage"]
    assert stages[:4] == ["rewrite", "base_image", "material_edit", "mesh"]
    announced = [update.artifact for update in updates if update.type == "artifact"]
    assert set(announced) == set(record.artifacts)  # manifest.json too, announced after the run
    assert updates[-1].type == "done" and updates[-1].job.status == "succeeded"


def test_run_job_stops_at_the_next_step_when_cancelled(tiny_chain: Any, tmp_path: Path) -> None:
    cancel = threading.Event()

    def on_update(update: JobUpdate) -> None:
        if update.type == "progress" and update.job.stage == "base_image":
            cancel.set()

    record = run_job(_running({**FAST, "steps": 20}), tmp_path, tiny_chain, on_update, cancel)
    assert record.status == "cancelled" and record.error is not None
    assert record.error == {"code": "cancelled", "stage": "base_image", "message": "cancelled by request"}
    assert "textured.png" not in record.artifacts
