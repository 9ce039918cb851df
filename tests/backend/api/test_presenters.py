"""Stored jobs → public JSON: absolute signed URLs from the public URL, artifact fields, events."""

from __future__ import annotations

from alch3mist.api.presenters import Links, artifact_key, to_event, to_public
from alch3mist.api.signing import LinkSigner
from alch3mist.jobs.store import JobRecord
from alch3mist.jobs.worker import JobUpdate

NOW = 1_000_000.0
SIGNER = LinkSigner(b"k", clock=lambda: NOW)
LINKS = Links("https://gpu.example.org", SIGNER, chat_ttl_s=30 * 86400, page_ttl_s=60)
FILES = ["base.png", "textured.png", "model.glb", "texture.png", "views/view_01.png", "views/view_00.png",
         "contact_sheet.png", "viewer.html", "manifest.json"]  # fmt: skip


def _record(**fields: object) -> JobRecord:
    return JobRecord(id="a" * 32, **fields)  # type: ignore[arg-type]


def test_artifacts_are_absolute_signed_urls_on_the_public_url() -> None:
    job = to_public(_record(status="succeeded", artifacts=FILES, seed=3), None, LINKS)
    prefix = f"https://gpu.example.org/v1/jobs/{'a' * 32}"
    base = job.artifacts.base_image
    assert base is not None and base.startswith(f"{prefix}/artifacts/base.png?token=")
    assert job.artifacts.glb is not None and "/artifacts/model.glb?token=" in job.artifacts.glb
    assert [v.split("?")[0].rsplit("/", 1)[1] for v in job.artifacts.views] == ["view_00.png", "view_01.png"]
    assert job.artifacts.viewer is not None and job.artifacts.viewer.startswith(f"{prefix}/viewer?token=")
    assert job.links["viewer_inline"].startswith(f"{prefix}/viewer?inline=1&token=")
    assert "cancel" not in job.links and job.links["events"] == f"{prefix}/events"


def test_nothing_before_it_exists() -> None:
    job = to_public(_record(artifacts=["base.png"]), 2, LINKS)
    assert job.artifacts.glb is None and job.artifacts.viewer is None and job.queue_position == 2
    assert "viewer" not in job.links and "cancel" in job.links


def test_artifact_events_name_the_field_and_the_file() -> None:
    update = JobUpdate("artifact", _record(status="running", stage="views"), artifact="views/view_00.png")
    event = to_event(update, LINKS)
    assert event.artifact == "views" and event.file == "views/view_00.png"
    assert event.url is not None and "/artifacts/views/view_00.png?token=" in event.url and event.job is None
    assert artifact_key("viewer.html") == "viewer" and artifact_key("input.png") == "input.png"
    failed = _record(status="failed", error={"code": "x", "message": "m", "stage": "mesh"})
    done = to_event(JobUpdate("done", failed), LINKS)
    assert done.job is not None and done.job.error is not None and done.job.error.stage == "mesh"


def test_a_job_shows_the_lora_asked_for_until_it_ran_then_the_one_that_ran() -> None:
    asked = {"lora": {"name": None, "scale": 1.0}}
    queued = to_public(_record(params=asked), 1, LINKS)
    assert queued.lora is not None and queued.lora.scale == 1.0

    ran_without = to_public(_record(status="succeeded", params=asked, manifest={"lora": None}), None, LINKS)
    assert ran_without.lora is None  # the server had no LoRA: the job must not claim one


def _token(url: str) -> str:
    return url.split("token=")[1]


def test_links_in_answers_last_as_long_as_the_job_and_page_links_are_fresh() -> None:
    job = to_public(_record(status="succeeded", artifacts=FILES), None, LINKS)
    assert job.artifacts.glb is not None and job.artifacts.viewer is not None
    kept = _token(job.artifacts.glb)
    assert int(kept.split(".")[0]) == NOW + 30 * 86400  # the chat's copy dies with the job, not before
    assert SIGNER.check(kept, "a" * 32, "model.glb") == "ok"
    fresh = _token(LINKS.artifact("a" * 32, "model.glb", fresh=True))
    assert int(fresh.split(".")[0]) == NOW + 60
    assert int(_token(LINKS.bundle("a" * 32)).split(".")[0]) == NOW + 60  # only a page links the bundle
    forever = Links("https://x", SIGNER, chat_ttl_s=None, page_ttl_s=60)  # retention off: links never expire
    assert _token(forever.viewer("a" * 32)).startswith("0.")


def test_a_finished_job_carries_its_chat_summary() -> None:
    assert to_public(_record(status="running"), None, LINKS).summary is None
    done = to_public(_record(status="succeeded", seed=3, engine_3d="preview"), None, LINKS)
    assert done.summary is not None and done.summary.startswith("### Your 3D asset")
    assert "**Seed:** 3" in done.summary and "preview (the built-in CPU engine" in done.summary
    assert to_public(_record(status="succeeded", user=""), None, LINKS).user is None  # the key's own job
