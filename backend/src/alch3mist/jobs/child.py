"""The process the embedded worker runs the chain in, and the API process's handle on it (``ChainProcess``).

The child is started with multiprocessing's ``spawn`` (CUDA cannot be forked), builds the chain once with a factory
named by dotted path (``module:function``, called with the ``Settings``), reports ``Ready`` and then runs one job at
a time: ``RunJob`` in, ``JobEvent``s and one ``JobDone`` out, over one pipe. Cancel crosses as a multiprocessing
``Event``. A second pipe answers the API's questions while a job runs (``info``: what the chain runs, with engine
health; ``loras``: the LoRA names now), from a thread of the child. When the parent dies, that pipe closes and the
child exits at once — a stage in flight never outlives the service.

Nothing here decides a job's status: ``jobs.worker`` watches the clock, kills and replaces the child.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..config import Settings
from ..domain import ChainInfo, GenerationChain
from ..errors import Alch3mistError
from .runner import ChainOutcome, execute

if TYPE_CHECKING:
    from ..chain import ChainEvent, ChainRules

__all__ = [
    "DEFAULT_CHAIN_FACTORY",
    "ChainProcess",
    "ChildDied",
    "JobDone",
    "JobEvent",
    "Ready",
    "RunJob",
    "child_main",
]

logger = logging.getLogger(__name__)

DEFAULT_CHAIN_FACTORY = "alch3mist.chain:build_chain"
CANCEL_POLL_S = 0.1  # how often the child looks at the cross-process cancel flag
QueryKind = Literal["info", "loras"]


# --- messages (picklable) ---


@dataclass(frozen=True)
class RunJob:
    job_id: str
    params: dict[str, Any]
    job_dir: str


@dataclass(frozen=True)
class Ready:
    """The chain is loaded: what it runs (its info at load time), its validation rules and LoRA names."""

    pid: int
    info: ChainInfo
    rules: ChainRules
    loras: list[str]


@dataclass(frozen=True)
class LoadFailed:
    message: str


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    event: ChainEvent


@dataclass(frozen=True)
class JobDone:
    job_id: str
    outcome: ChainOutcome


@dataclass(frozen=True)
class Query:
    id: int
    kind: QueryKind


@dataclass(frozen=True)
class Answer:
    id: int
    value: ChainInfo | list[str] | None


ChildMessage = Ready | LoadFailed | JobEvent | JobDone


class ChildDied(Exception):
    """The chain process is gone (killed, crashed, out of memory)."""

    def __init__(self, exitcode: int | None) -> None:
        super().__init__(f"worker process died (exit code {exitcode})")
        self.exitcode = exitcode


# --- the child ---


def load_factory(path: str) -> Callable[[Settings], GenerationChain]:
    """``module:function`` → the function (the chain factory)."""
    module_name, _, name = path.partition(":")
    factory: Callable[[Settings], GenerationChain] = getattr(importlib.import_module(module_name), name)
    return factory


def child_main(
    factory: str,
    settings: Settings,
    jobs: Connection,
    queries: Connection,
    cancel: ProcessEvent,
    log_formatter: logging.Formatter | None,
) -> None:
    """The child's whole life: load the chain, report, run jobs until told to exit (``None``) or orphaned."""
    from ..models.hunyuan3d import without_torchvision_side_dir

    _configure_logging(log_formatter)
    sys.path[:] = without_torchvision_side_dir(sys.path)  # inherited from a parent that ran hunyuan3d-local
    try:
        chain = load_factory(factory)(settings)
        jobs.send(Ready(os.getpid(), chain.info(), chain.rules(), _lora_names(chain)))
    except Exception as exc:
        message = exc.message if isinstance(exc, Alch3mistError) else f"{type(exc).__name__}: {exc}"
        logger.exception("the chain could not be loaded")
        jobs.send(LoadFailed(message))
        return
    threading.Thread(target=_answer_queries, args=(chain, queries), name="alch3mist-queries", daemon=True).start()
    send_lock = threading.Lock()
    while True:
        try:
            message = jobs.recv()
        except EOFError:
            return
        if not isinstance(message, RunJob):
            return

        def on_event(event: ChainEvent, job_id: str = message.job_id) -> None:
            with send_lock:
                try:
                    jobs.send(JobEvent(job_id, event))
                except OSError:
                    os._exit(0)  # the API process is gone: nobody to run this job for

        local_cancel, done = threading.Event(), threading.Event()
        mirror = threading.Thread(target=_mirror_cancel, args=(cancel, local_cancel, done), daemon=True)
        mirror.start()
        try:
            outcome = execute(message.params, Path(message.job_dir), chain, on_event, local_cancel)
        finally:
            done.set()
            mirror.join()
        with send_lock:
            jobs.send(JobDone(message.job_id, outcome))


def _configure_logging(formatter: logging.Formatter | None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if formatter is not None:
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def _mirror_cancel(source: ProcessEvent, target: threading.Event, done: threading.Event) -> None:
    """Copy the cross-process cancel flag onto the ``threading.Event`` the chain's stages look at."""
    while not done.is_set():
        if source.wait(CANCEL_POLL_S):
            target.set()
            return


def _lora_names(chain: GenerationChain) -> list[str]:
    return [lora.name for lora in chain.loras()]


def _answer_queries(chain: GenerationChain, queries: Connection) -> None:
    while True:
        try:
            query = queries.recv()
        except (EOFError, OSError):
            os._exit(0)  # the API process is gone: stop now, whatever stage is running
        value: ChainInfo | list[str] | None
        try:
            value = chain.info() if query.kind == "info" else _lora_names(chain)
        except Exception:
            logger.exception("chain query failed", extra={"query": query.kind})
            value = None
        queries.send(Answer(query.id, value))


# --- the parent's handle ---


class ChainProcess:
    """One chain process, from the API process's side: start, wait for ``Ready``, send jobs, read messages, ask
    questions, kill. Used by one thread (the worker's) except ``query`` and ``cancel``, which are thread-safe."""

    def __init__(self, factory: str, settings: Settings) -> None:
        context = multiprocessing.get_context("spawn")
        self.cancel = context.Event()
        self._jobs, child_jobs = context.Pipe()
        self._queries, child_queries = context.Pipe()
        self.process = context.Process(
            target=child_main,
            args=(factory, settings, child_jobs, child_queries, self.cancel, _root_formatter()),
            name="alch3mist-chain",
        )
        self.process.start()
        child_jobs.close()  # only the child holds these ends now: its death closes the pipes
        child_queries.close()
        self.ready: Ready | None = None
        self._query_lock = threading.Lock()
        self._query_ids = itertools.count()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def wait_ready(self, give_up: Callable[[], bool]) -> Ready:
        """Block until the chain is loaded. Raises ``ModelLoadError`` when loading failed, ``ChildDied`` when the
        process died (or ``give_up()`` turned true: it is killed then)."""
        from ..errors import ModelLoadError

        while True:
            message = self.receive(0.2)
            if isinstance(message, Ready):
                self.ready = message
                return message
            if isinstance(message, LoadFailed):
                self.stop(timeout=10)
                raise ModelLoadError(message.message)
            if give_up():
                self.kill()
                raise ChildDied(self.process.exitcode)

    def run(self, job_id: str, params: dict[str, Any], job_dir: Path) -> None:
        self.cancel.clear()
        try:
            self._jobs.send(RunJob(job_id, params, str(job_dir)))
        except OSError:
            self.process.join(5)
            raise ChildDied(self.process.exitcode) from None

    def receive(self, timeout: float) -> ChildMessage | None:
        """The child's next message, or None after ``timeout``; raises ``ChildDied`` when it is gone."""
        ready = wait([self._jobs, self.process.sentinel], timeout)
        if self._jobs in ready:
            try:
                message: ChildMessage = self._jobs.recv()
                return message
            except (EOFError, OSError):
                pass
        elif not ready:
            return None
        self.process.join(5)
        raise ChildDied(self.process.exitcode)

    def query(self, kind: QueryKind, timeout: float) -> ChainInfo | list[str] | None:
        """Ask the loaded chain (from a thread of the child, also while a job runs); None when it does not answer
        in time or is gone."""
        with self._query_lock:
            query = Query(next(self._query_ids), kind)
            deadline = time.monotonic() + timeout
            try:
                self._queries.send(query)
                while (left := deadline - time.monotonic()) > 0 and self._queries.poll(left):
                    answer: Answer = self._queries.recv()
                    if answer.id == query.id:  # an older answer came after its asker gave up: skip it
                        return answer.value
            except (EOFError, OSError):
                return None
        return None

    def kill(self) -> None:
        """SIGKILL and reap: when this returns, the process no longer exists."""
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self._close()

    def stop(self, timeout: float) -> None:
        """Ask the child to exit between jobs; kill it when it does not within ``timeout``."""
        with contextlib.suppress(OSError):
            self._jobs.send(None)
        self.process.join(timeout)
        self.kill()

    def _close(self) -> None:
        self._jobs.close()
        with self._query_lock:
            self._queries.close()


def _root_formatter() -> logging.Formatter | None:
    """The API process's log format, for the child's lines (JSON when ``serve`` configured it)."""
    handlers = logging.getLogger().handlers
    formatter = handlers[0].formatter if handlers else None
    return formatter if type(formatter).__module__.startswith("alch3mist.") else None
