"""Which engines a backend has, and the default per preset."""

from __future__ import annotations

from alch3mist.config import Settings
from alch3mist.engines import registry
from alch3mist.engines.hunyuan3d import Hunyuan3DEngine
from alch3mist.engines.preview import PreviewEngine
from alch3mist.engines.trellis import TrellisEngine


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_preview_is_always_there_and_remote_engines_need_urls(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(registry, "trellis_importable", lambda: False)
    assert list(registry.build_engines(_settings())) == ["preview"]
    engines = registry.build_engines(
        _settings(trellis_url="http://gpu:7860/", hunyuan3d_url="http://gpu:8081", engine_timeout_s=42)
    )
    assert isinstance(engines["preview"], PreviewEngine)
    trellis, hunyuan = engines["trellis"], engines["hunyuan3d"]
    assert isinstance(trellis, TrellisEngine) and trellis.url == "http://gpu:7860" and trellis.timeout_s == 42
    assert isinstance(hunyuan, Hunyuan3DEngine) and hunyuan.url == "http://gpu:8081"


def test_trellis_in_process_when_the_package_is_importable(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(registry, "trellis_importable", lambda: True)
    engine = registry.build_engines(_settings())["trellis"]
    assert isinstance(engine, TrellisEngine) and engine.url is None


def test_default_engine(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(registry, "trellis_importable", lambda: False)
    assert registry.default_engine(_settings(), "full") == "preview"
    assert registry.default_engine(_settings(trellis_url="http://gpu:7860"), "full") == "trellis"
    assert registry.default_engine(_settings(trellis_url="http://gpu:7860"), "tiny") == "preview"
    assert registry.default_engine(_settings(engine_3d="hunyuan3d"), "tiny") == "hunyuan3d"
