"""Progress and cancellation for every stage, through diffusers' own ``callback_on_step_end`` / interrupt."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import Cancelled

# (fraction 0..1 of the current stage, short human message)
ProgressFn = Callable[[float, str], None]


def _ignore(fraction: float, message: str) -> None:
    return None


@dataclass
class StageControl:
    """What a running stage is given: where to report progress and how to learn it was cancelled."""

    on_progress: ProgressFn = _ignore
    cancel: threading.Event = field(default_factory=threading.Event)

    def report(self, fraction: float, message: str = "") -> None:
        self.on_progress(min(max(fraction, 0.0), 1.0), message)

    def sub(self, start: float, end: float) -> StageControl:
        """A control whose 0..1 maps onto ``start..end`` of this one, sharing its cancel event (a step's window)."""

        def report(fraction: float, message: str) -> None:
            self.report(start + (end - start) * fraction, message)

        return StageControl(on_progress=report, cancel=self.cancel)

    def raise_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("job cancelled")

    def diffusers_callback(self, total_steps: int, label: str) -> Callable[..., dict[str, Any]]:
        """A ``callback_on_step_end``: reports each step and sets the pipeline's interrupt flag on cancel."""

        def on_step_end(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
            self.report((step + 1) / total_steps, f"{label} {step + 1}/{total_steps}")
            if self.cancel.is_set():
                pipe._interrupt = True  # diffusers checks this flag at the top of each denoising step
            return callback_kwargs

        return on_step_end
