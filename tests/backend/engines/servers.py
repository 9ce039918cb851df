"""Start the engine stand-in servers (tests/servers/) as real subprocesses on free ports, and make test images."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVERS = REPO_ROOT / "tests" / "servers"
STANDIN_PYTHON = REPO_ROOT / ".cache" / "trellis-standin-venv" / "bin" / "python"  # Gradio 4.44.1 (TRELLIS)
STANDIN2_PYTHON = REPO_ROOT / ".cache" / "trellis2-standin-venv" / "bin" / "python"  # Gradio 6.0.1 (TRELLIS.2)
SETUP_HINT = "run scripts/setup-engine-test-servers.sh (or `make test-deps`) first"


@dataclass
class RunningServer:
    url: str
    calls_log: Path
    fault_file: Path

    def set_fault(self, fault: str) -> None:
        """Make the server misbehave from the next call on ("" = behave)."""
        self.fault_file.write_text(fault)

    def calls(self) -> list[dict[str, object]]:
        import json

        if not self.calls_log.is_file():
            return []
        return [json.loads(line) for line in self.calls_log.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port_url() -> str:
    """A URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


@contextlib.contextmanager
def run_server(
    command: list[str], port: int, ready_path: str, workdir: Path, timeout_s: float = 120.0
) -> Iterator[RunningServer]:
    calls_log, fault_file = workdir / "calls.jsonl", workdir / "fault.txt"
    log_path = workdir / "server.log"
    full = [*command, "--port", str(port), "--calls-log", str(calls_log), "--fault-file", str(fault_file)]
    with log_path.open("w") as log:
        process = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, url + ready_path, log_path, timeout_s)
        yield RunningServer(url=url, calls_log=calls_log, fault_file=fault_file)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"stand-in server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        time.sleep(0.3)
    pytest.fail(f"stand-in server not ready at {url} after {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")


def trellis_command(variant: str = "trellis") -> list[str]:
    """TRELLIS' app.py stand-in on Gradio 4.44.1, or TRELLIS.2's app.py / app_texturing.py on Gradio 6.0.1 (each in
    the venv it pins): ``variant`` is trellis, trellis2 or trellis2-texturing."""
    python, script = {
        "trellis": (STANDIN_PYTHON, "trellis_app.py"),
        "trellis2": (STANDIN2_PYTHON, "trellis2_app.py"),
        "trellis2-texturing": (STANDIN2_PYTHON, "trellis2_texturing_app.py"),
    }[variant]
    if not python.is_file():
        pytest.fail(f"the {variant} stand-in needs its own venv at {python}: {SETUP_HINT}")
    return [str(python), str(SERVERS / script)]


def hunyuan_command(version: str = "2.1", delay_s: float = 0.1, enable_tex: bool = False) -> list[str]:
    command = [sys.executable, str(SERVERS / "hunyuan3d_server.py"), "--version", version, "--delay", str(delay_s)]
    return [*command, "--enable_tex"] if enable_tex else command


def object_image(
    size: int = 1024, background: tuple[int, int, int] = (244, 244, 240), mode: str = "RGB"
) -> Image.Image:
    """A centred cartoon animal (striped body, head, legs) on a plain background, like FLUX's product shots."""
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    s = size / 1024
    for x in (330, 420, 600, 690):
        draw.rectangle((x * s, 600 * s, (x + 50) * s, 860 * s), fill=(90, 60, 40))
    draw.ellipse((260 * s, 330 * s, 780 * s, 680 * s), fill=(60, 140, 70))
    for k in range(6):
        x0 = (320 + 75 * k) * s
        draw.line((x0, 350 * s, x0 + 40 * s, 660 * s), fill=(30, 90, 40), width=max(1, int(14 * s)))
    draw.ellipse((700 * s, 220 * s, 900 * s, 420 * s), fill=(200, 160, 50))
    draw.ellipse((780 * s, 280 * s, 810 * s, 310 * s), fill=(10, 10, 10))
    if mode == "RGBA":
        alpha = Image.new("L", image.size, 0)
        ImageDraw.Draw(alpha).ellipse((250 * s, 200 * s, 910 * s, 870 * s), fill=255)
        image.putalpha(alpha)
    return image
