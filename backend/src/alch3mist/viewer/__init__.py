"""The interactive 3D viewer page (``<model-viewer>``), in URL mode and in a self-contained mode."""

from .page import bundle_path, render_inline_page, render_url_page

__all__ = ["bundle_path", "render_inline_page", "render_url_page"]
