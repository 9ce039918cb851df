"""One mapping from our errors to exit statuses, used by every command."""

from __future__ import annotations

import pytest
from alch3mist.errors import InvalidRequest, ModelLoadError, OutOfMemory, UnknownLora, report_errors


@pytest.mark.parametrize(
    ("error", "status"),
    [(InvalidRequest("bad"), 2), (UnknownLora("bad"), 2), (OutOfMemory("bad"), 3), (ModelLoadError("bad"), 1)],
)
def test_an_error_becomes_one_line_and_its_exit_status(
    error: Exception, status: int, capsys: pytest.CaptureFixture[str]
) -> None:
    def command() -> int:
        raise error

    assert report_errors(command) == status
    assert capsys.readouterr().err == "error: bad\n"


def test_a_command_that_succeeds_keeps_its_status() -> None:
    assert report_errors(lambda: 0) == 0
