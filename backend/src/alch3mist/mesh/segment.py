"""Find the object in a product-style image (one object on a plain background).

The alpha channel is used when the image has a real one. Otherwise the background colour is the median of the
image border, every pixel's distance to it is thresholded just above the border's own noise (capped by Otsu's
threshold for noisy backgrounds, never below ``MIN_CONTRAST``), and the largest connected component with its holes
filled is the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import InvalidRequest

WORK_SIZE = 256  # longest side of the image the segmentation runs on
MIN_CONTRAST = 0.1  # smallest colour distance (0..sqrt(3)) counted as "object"
MIN_COVERAGE = 0.002  # an object smaller than this fraction of the image is "no object"
BORDER = 3  # width in pixels of the frame the background colour is read from
BUSY_BORDER = 0.12  # median colour distance along the frame above which there is no plain background at all


@dataclass
class Silhouette:
    """The object's mask on a ``WORK_SIZE`` copy of the image."""

    mask: NDArray[np.bool_]  # (h, w)
    method: str  # "alpha" or "border-colour"
    coverage: float  # fraction of the image covered by the object
    background: tuple[float, float, float] | None  # RGB 0..1 when found from the border
    threshold: float | None = None  # colour distance above which a pixel is "object" (border-colour method)

    def object_pixels(self, image: Image.Image, strictness: float = 1.0) -> NDArray[np.bool_]:
        """Which pixels of ``image`` (any size) look like the object, by the rule the mask was made with;
        ``strictness`` > 1 also drops edge pixels blended with the background."""
        if self.background is None or self.threshold is None:
            if "A" in image.getbands():
                return np.asarray(image.getchannel("A")) > min(254, 127 * strictness)
            return np.ones((image.size[1], image.size[0]), dtype=bool)
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
        distance = np.linalg.norm(rgb - np.asarray(self.background), axis=-1)
        return np.asarray(distance > self.threshold * strictness, dtype=bool)

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """(row0, row1, col0, col1) of the mask, end-exclusive."""
        rows = np.flatnonzero(self.mask.any(axis=1))
        cols = np.flatnonzero(self.mask.any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def segment_object(image: Image.Image, work_size: int = WORK_SIZE) -> Silhouette:
    """The object's silhouette; ``InvalidRequest`` when the image is all background."""
    small = _downscale(image, work_size)
    if _has_real_alpha(small):
        alpha = np.asarray(small.getchannel("A"), dtype=np.uint8)
        mask, method, background, threshold = alpha > 127, "alpha", None, None
    else:
        rgb = np.asarray(small.convert("RGB"), dtype=np.float32) / 255.0
        if _border_is_busy(rgb):
            # A photo or texture with no plain background: nothing separates an object from its surroundings,
            # so the whole picture is the object (a relief card) — said in the silhouette's method.
            full = np.ones(rgb.shape[:2], dtype=bool)
            return Silhouette(mask=full, method="whole-frame", coverage=1.0, background=None, threshold=None)
        mask, background, threshold = _mask_from_border_colour(rgb)
        method = "border-colour"
    mask = _largest_component(mask)
    coverage = float(mask.mean())
    if coverage < MIN_COVERAGE:
        raise InvalidRequest(
            "no object found in the image: it looks like plain background "
            f"(object covers {coverage:.2%} of it); use a picture of one object on a plain background"
        )
    return Silhouette(mask=mask, method=method, coverage=coverage, background=background, threshold=threshold)


def _downscale(image: Image.Image, work_size: int) -> Image.Image:
    small = image.copy()
    small.thumbnail((work_size, work_size), Image.Resampling.BILINEAR)
    return small


def _has_real_alpha(image: Image.Image) -> bool:
    if "A" not in image.getbands():
        return False
    alpha = np.asarray(image.getchannel("A"))
    return bool((alpha < 128).mean() > 0.01)


def _border_frame(rgb: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.concatenate(
        [
            rgb[:BORDER].reshape(-1, 3),
            rgb[-BORDER:].reshape(-1, 3),
            rgb[:, :BORDER].reshape(-1, 3),
            rgb[:, -BORDER:].reshape(-1, 3),
        ]
    )


def _border_is_busy(rgb: NDArray[np.float32]) -> bool:
    frame = _border_frame(rgb)
    spread = np.linalg.norm(frame - np.median(frame, axis=0), axis=-1)
    return float(np.median(spread)) > BUSY_BORDER


def _mask_from_border_colour(
    rgb: NDArray[np.float32],
) -> tuple[NDArray[np.bool_], tuple[float, float, float], float]:
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    frame = _border_frame(rgb)
    background = np.median(frame, axis=0)
    distance = np.linalg.norm(rgb - background, axis=-1)
    # "background" is what the border looks like: above its own noise, and never above Otsu's split (which
    # alone would cut between two object colours when the object has several)
    noise = 1.5 * float(np.percentile(np.linalg.norm(frame - background, axis=-1), 99)) + 0.02
    threshold = max(MIN_CONTRAST, noise)
    if float(distance.max()) > threshold:
        threshold = max(MIN_CONTRAST, min(noise, float(threshold_otsu(distance))))
    mask = ndimage.binary_opening(distance > threshold, structure=np.ones((3, 3), dtype=bool))
    bg = (float(background[0]), float(background[1]), float(background[2]))
    return np.asarray(mask, dtype=bool), bg, threshold


def _largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    if count == 0:
        return np.zeros_like(mask, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    largest = labels == (int(np.argmax(sizes)) + 1)
    return np.asarray(ndimage.binary_fill_holes(largest), dtype=bool)
