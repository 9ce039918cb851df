"""Chain factories for the worker tests, built in the worker's child process through the same path as the service's
(``Worker(..., chain_factory="tests.backend.jobs.chains:<name>")``).

``build_hanging_chain``: the real tiny chain, except that a job whose base prompt contains ``HANG`` never leaves its
base image stage and ignores cancellation (a wedged CUDA call or remote engine), and one whose base prompt contains
``CRAWL`` takes 0.1 s steps until it is cancelled, stopping at the next step like a diffusers stage (a stage that is
only slow, whatever the machine's speed). Every base image stage leaves a probe
in ``<data_dir>/probes``: ``hung-<pid>`` when it hangs, ``ran-<pid>-<n>.json`` otherwise, saying which hung processes
were still alive at that moment — the proof that a job never runs next to a hung one.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

from alch3mist.chain import Chain, build_chain
from alch3mist.config import Settings

HANG = "HANG"
HUNG = {"base_prompt": f"a cow {HANG}", "edit_prompt": "make it crocodile skin", "seed": 7, "steps": 2, "views": 0}
CRAWL = "CRAWL"
CRAWLING = {**HUNG, "base_prompt": f"a cow {CRAWL}"}
CRAWL_STEP_S = 0.1
PROBES = "probes"
TINY_CACHE_DIR = Path(__file__).resolve().parents[3] / ".cache" / "alch3mist-tests"
_runs = itertools.count()


def probe_dir(settings_or_data_dir: Settings | Path) -> Path:
    data_dir = settings_or_data_dir.data_dir if isinstance(settings_or_data_dir, Settings) else settings_or_data_dir
    return data_dir / PROBES


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie, dead but not yet reaped by whoever inherited it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class HangingBaseImage:
    """The real base image stage, or — for a ``HANG`` prompt — a stage that never returns and ignores cancel."""

    def __init__(self, stage: Any, probes: Path) -> None:
        self.stage = stage
        self.probes = probes

    def run(self, prompt: str, **kwargs: Any) -> Any:
        if CRAWL in prompt:
            control = kwargs["control"]
            for step in itertools.count(1):
                control.raise_if_cancelled()
                control.report(min(step / 1000, 1.0), f"crawling: step {step}")
                time.sleep(CRAWL_STEP_S)
        if HANG in prompt:
            (self.probes / f"hung-{os.getpid()}").write_text("")
            while True:  # ignores kwargs["control"].cancel on purpose
                time.sleep(0.05)
        hung = [int(path.name.removeprefix("hung-")) for path in self.probes.glob("hung-*")]
        probe = {"pid": os.getpid(), "hung_alive": [pid for pid in hung if alive(pid)], "at": time.time()}
        (self.probes / f"ran-{os.getpid()}-{next(_runs)}.json").write_text(json.dumps(probe))
        return self.stage.run(prompt, **kwargs)


def build_hanging_chain(settings: Settings) -> Chain:
    probes = probe_dir(settings)
    probes.mkdir(parents=True, exist_ok=True)
    (probes / f"built-{os.getpid()}").write_text("")
    chain = build_chain(settings)
    chain.base_image = HangingBaseImage(chain.base_image, probes)  # type: ignore[assignment]
    return chain


def runs(data_dir: Path) -> list[dict[str, Any]]:
    """The probes of base image stages that ran (not hung), in the order they started."""
    found = [json.loads(path.read_text()) for path in probe_dir(data_dir).glob("ran-*.json")]
    return sorted(found, key=lambda probe: probe["at"])


def hung_pids(data_dir: Path) -> list[int]:
    return [int(path.name.removeprefix("hung-")) for path in probe_dir(data_dir).glob("hung-*")]


def builder_pids(data_dir: Path) -> list[int]:
    return [int(path.name.removeprefix("built-")) for path in probe_dir(data_dir).glob("built-*")]


def tiny_settings(data_dir: Path, **fields: Any) -> Settings:
    """The tiny preset with the preview engine and the offline rewriter (nothing from a developer's .env)."""
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        data_dir=data_dir,
        preset="tiny",
        cache_dir=TINY_CACHE_DIR,
        engine_3d="preview",
        lora_dir=None,
        llm_url=None,
        trellis_url=None,
        hunyuan3d_url=None,
        **fields,
    )


def serve_a_hung_job(data_dir: str) -> None:
    """The API process's side of a worker running one hung job until it is killed (``python -c`` of a test)."""
    from alch3mist.jobs.store import JobRecord, JobStore, new_job_id
    from alch3mist.jobs.worker import Worker

    folder = Path(data_dir)
    worker = Worker(JobStore(folder / "data"), tiny_settings(folder), f"{__name__}:build_hanging_chain")
    worker.start()
    worker.submit(JobRecord(id=new_job_id(), params=dict(HUNG)))
    while True:
        time.sleep(1)
