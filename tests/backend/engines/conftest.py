"""Engine test servers: stand-ins of the TRELLIS / TRELLIS.2 apps and the Hunyuan3D api_servers, one per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .servers import RunningServer, free_port, hunyuan_command, run_server, trellis_command


@pytest.fixture(scope="module")
def trellis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """TRELLIS' app.py (Gradio 4.44.1, its own venv); ready when its config answers."""
    with run_server(trellis_command("trellis"), free_port(), "/config", tmp_path_factory.mktemp("trellis")) as server:
        yield server


@pytest.fixture(scope="module")
def trellis2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """TRELLIS.2's app.py (Gradio 6.0.1, its own venv)."""
    with run_server(trellis_command("trellis2"), free_port(), "/config", tmp_path_factory.mktemp("trellis2")) as server:
        yield server


@pytest.fixture(scope="module")
def trellis2_texturing_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """TRELLIS.2's app_texturing.py (Gradio 6.0.1, its own venv)."""
    command = trellis_command("trellis2-texturing")
    with run_server(command, free_port(), "/config", tmp_path_factory.mktemp("trellis2tex")) as server:
        yield server


@pytest.fixture(scope="module")
def hunyuan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The Hunyuan3D-2.1 api_server stand-in."""
    with run_server(hunyuan_command("2.1"), free_port(), "/health", tmp_path_factory.mktemp("hy21")) as server:
        yield server


@pytest.fixture(scope="module")
def hunyuan20_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The Hunyuan3D-2.0 api_server stand-in started without --enable_tex (its default)."""
    with run_server(hunyuan_command("2.0"), free_port(), "/docs", tmp_path_factory.mktemp("hy20")) as server:
        yield server


@pytest.fixture(scope="module")
def hunyuan20_tex_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The Hunyuan3D-2.0 api_server stand-in started with --enable_tex."""
    command = hunyuan_command("2.0", enable_tex=True)
    with run_server(command, free_port(), "/docs", tmp_path_factory.mktemp("hy20tex")) as server:
        yield server
