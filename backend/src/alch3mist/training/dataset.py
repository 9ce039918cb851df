"""``alch3mist dataset build``: the (original, transformed) pairs the Alch3mist LoRA is trained on.

Two ways in:

1. From a prompt file (objects x materials; the curated set ``prompts/materials.json`` by default): each pair's
   original is made by FLUX.1-dev (``BaseImageStage``) and its transformed image by FLUX.1 Kontext [dev]
   (``MaterialEditStage``) *without* any LoRA — the LoRA learns to reproduce and strengthen that edit.
2. From pairs a person made elsewhere: ``--originals DIR --transformed DIR`` (+ captions).

Layout of the dataset folder::

    dataset.json            how it was built (the build refuses to resume with different settings)
    img0/img0_001.png       original (the Kontext input)
    img1/img1_001.png       transformed (the training target)
    metadata.jsonl          one PairRecord per training pair, caption included (always with the trigger word)
    test.jsonl              the held-out prompts, never trained on (``alch3mist lora eval`` runs them)
    ai_toolkit.yaml         + ai_toolkit/{targets,control}/: the same pairs for ostris ai-toolkit

A build is deterministic by ``--seed`` (pair order, and each pair's seed = seed + index) and resumable: every
finished pair is recorded at once, and ``--resume`` skips the pairs whose images and record exist.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image, UnidentifiedImageError

from ..errors import DatasetError, report_errors
from ..prompting.schema import TRIGGER_WORD
from .ai_toolkit import CONFIG_NAME, EXPORT_DIR, write_ai_toolkit_export
from .recipe import TrainingRecipe
from .records import (
    INFO_FILE,
    ORIGINALS,
    TEST_FILE,
    TRAIN_FILE,
    TRANSFORMED,
    PairRecord,
    read_jsonl,
    read_records,
    read_test_records,
    write_jsonl,
)

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PROMPTS",
    "DatasetError",
    "PairRecord",
    "PromptSet",
    "PromptSpec",
    "add_arguments",
    "build",
    "centre_crop_resize",
    "ensure_trigger",
    "load_prompt_specs",
    "main",
    "plan_pairs",
    "read_records",
    "read_test_records",
]

DEFAULT_PROMPTS = Path(__file__).parent / "prompts" / "materials.json"
OWNED = (ORIGINALS, TRANSFORMED, TRAIN_FILE, TEST_FILE, INFO_FILE, EXPORT_DIR, CONFIG_NAME, "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
RESOLUTIONS = (512, 768, 1024)
DEFAULT_TEST_SIZE = 10
TEST_SEED_OFFSET = 100_000  # held-out prompts get seeds of their own, never a training pair's
BASE_TEMPLATE = (
    "a {object}, a single object, centred, whole object in view, plain light grey background, soft studio light, "
    "no text"
)
EDIT_TEMPLATE = f"{TRIGGER_WORD} turn its surface into {{material}}, keep the same shape, pose and background"


@dataclass(frozen=True)
class PromptSpec:
    object: str
    material: str
    family: str
    base_prompt: str
    edit_prompt: str


# --- prompts ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptSet:
    """Families of (objects, materials) and the two templates that turn a pair into prompts."""

    families: dict[str, tuple[list[str], list[str]]]
    base_template: str = BASE_TEMPLATE
    edit_template: str = EDIT_TEMPLATE

    def spec(self, obj: str, material: str, family: str) -> PromptSpec:
        edit_prompt, _ = ensure_trigger(self.edit_template.format(object=obj, material=material))
        return PromptSpec(obj, material, family, self.base_template.format(object=obj, material=material), edit_prompt)


def load_prompt_specs(path: Path) -> PromptSet:
    """A prompt set from a ``.json`` file (like ``prompts/materials.json``) or a ``.txt`` file.

    The text format is one ``object | material`` per line (``#`` starts a comment); the lines are used as given.
    """
    if not path.is_file():
        raise DatasetError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        return _prompt_set_from_json(path, text)
    pairs = _txt_pairs(path, text)
    return PromptSet({"custom": ([obj for obj, _m in pairs], [mat for _o, mat in pairs])})


def _txt_pairs(path: Path, text: str) -> list[tuple[str, str]]:
    pairs = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        obj, sep, material = (part.strip() for part in line.partition("|"))
        if not sep or not obj or not material:
            raise DatasetError(f"{path}:{number}: expected 'object | material', got {raw!r}")
        pairs.append((obj, material))
    if not pairs:
        raise DatasetError(f"prompt file {path} holds no 'object | material' lines")
    return pairs


def _prompt_set_from_json(path: Path, text: str) -> PromptSet:
    try:
        data = json.loads(text)
        families = {
            str(family["name"]): ([str(o) for o in family["objects"]], [str(m) for m in family["materials"]])
            for family in data["families"]
        }
        prompt_set = PromptSet(
            families,
            str(data.get("base_template", BASE_TEMPLATE)),
            str(data.get("edit_template", EDIT_TEMPLATE)),
        )
        prompt_set.spec("object", "material", "check")  # templates may only use {object} and {material}
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError, IndexError, ValueError) as error:
        raise DatasetError(
            f"prompt file {path} is not a valid prompt set (needs families[].name/objects/materials): {error!r}"
        ) from error
    empty = [name for name, (objects, materials) in families.items() if not objects or not materials]
    if not families or empty:
        raise DatasetError(f"prompt file {path}: families without objects or materials: {empty or 'all'}")
    return prompt_set


def plan_pairs(prompt_set: PromptSet, seed: int) -> list[PromptSpec]:
    """Pair every object of a family with one of its materials, shuffled by ``seed``; interleave the families.

    Within a family the objects are shuffled and the (shuffled) materials cycled over them, so each object appears
    once. The round-robin interleaving means any prefix of the plan (the test split, a ``--limit``) covers every
    family. A ``.txt`` prompt file keeps its own pairing: its lines are only reordered.
    """
    rng = random.Random(seed)  # noqa: S311 - a reproducible shuffle, not a secret
    shuffled: list[list[PromptSpec]] = []
    for family in sorted(prompt_set.families):
        objects, materials = prompt_set.families[family]
        order = list(range(len(objects)))
        rng.shuffle(order)
        if family == "custom" and len(objects) == len(materials):
            specs = [prompt_set.spec(objects[i], materials[i], family) for i in order]
        else:
            cycle = list(materials)
            rng.shuffle(cycle)
            specs = [prompt_set.spec(objects[i], cycle[k % len(cycle)], family) for k, i in enumerate(order)]
        shuffled.append(specs)
    plan: list[PromptSpec] = []
    for row in range(max((len(items) for items in shuffled), default=0)):
        plan.extend(items[row] for items in shuffled if row < len(items))
    return plan


def ensure_trigger(caption: str) -> tuple[str, bool]:
    """``(caption with the trigger word, whether it had to be added)``."""
    caption = " ".join(caption.split())
    if TRIGGER_WORD.lower() in caption.lower():
        return caption, False
    return f"{TRIGGER_WORD} {caption}", True


# --- images ---------------------------------------------------------------------------------------------------


def centre_crop_resize(image: Image.Image, side: int | None) -> Image.Image:
    """The largest centred square, resized to ``side`` (unchanged when ``side`` is None)."""
    image = image.convert("RGB")
    if side is None:
        return image
    width, height = image.size
    crop = min(width, height)
    left, top = (width - crop) // 2, (height - crop) // 2
    return image.crop((left, top, left + crop, top + crop)).resize((side, side), Image.Resampling.LANCZOS)


def _open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error


def _save_png(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


# --- output folder --------------------------------------------------------------------------------------------


def _prepare_out_dir(out: Path, *, overwrite: bool, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"output path {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise DatasetError(
                f"output folder {out} already exists and is not empty; pass --overwrite to replace it "
                "or --resume to continue an interrupted build"
            )
        logger.warning("--overwrite: removing the dataset files in %s", out)
        for name in OWNED:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    for sub in (ORIGINALS, TRANSFORMED):
        (out / sub).mkdir(parents=True, exist_ok=True)


def _check_info(out: Path, info: dict[str, Any], resume: bool) -> None:
    path = out / INFO_FILE
    if resume and path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(key for key in info if previous.get(key) != info[key])
        if changed:
            raise DatasetError(
                f"cannot resume {out}: it was built with different settings ({', '.join(changed)}); "
                "use the same options, or --overwrite to start again"
            )
    path.write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _pair_names(index: int) -> tuple[str, str, str]:
    pair_id = f"{index:03d}"
    return pair_id, f"{ORIGINALS}/{ORIGINALS}_{pair_id}.png", f"{TRANSFORMED}/{TRANSFORMED}_{pair_id}.png"


# --- build from prompts ---------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace, models: Any = None) -> int:
    # 1. Check inputs and plan the pairs (deterministic by seed).
    plan = plan_pairs(load_prompt_specs(args.prompts), args.seed)
    test_size = DEFAULT_TEST_SIZE if args.test_size is None else args.test_size
    if test_size >= len(plan):
        raise DatasetError(f"--test-size {test_size} leaves no training pairs: the prompt file has {len(plan)} pairs")
    test_plan, train_plan = plan[:test_size], plan[test_size:]
    if args.limit is not None:
        train_plan = train_plan[: args.limit]

    # 2. Prepare the output folder; on --resume the settings must match the interrupted build.
    _prepare_out_dir(args.out, overwrite=args.overwrite, resume=args.resume)
    info = {
        "version": 1,
        "source": "prompts",
        "prompts_sha256": hashlib.sha256(args.prompts.read_bytes()).hexdigest(),
        "seed": args.seed,
        "test_size": test_size,
        "limit": args.limit,
        "resolution": args.resolution,
        "preset": args.preset,
        "size": args.size,
        "steps": args.steps,
        "edit_steps": args.edit_steps,
        "trigger_word": TRIGGER_WORD,
    }
    _check_info(args.out, info, args.resume)
    test_records = [
        _as_test(_record(spec, index, args.seed + TEST_SEED_OFFSET, with_images=False))
        for index, spec in enumerate(test_plan, 1)
    ]
    write_jsonl(args.out / TEST_FILE, test_records)

    # 3. Skip the finished pairs, generate the rest (each recorded as soon as both images are on disk).
    done = {
        record.id: record
        for record in read_jsonl(args.out / TRAIN_FILE)
        if args.resume and _has_images(args.out, record)
    }
    todo = [(i, spec) for i, spec in enumerate(train_plan, 1) if _pair_names(i)[0] not in done]
    if done:
        logger.info("resuming: %d of %d pairs already done", len(train_plan) - len(todo), len(train_plan))
    records = dict(done)
    if todo:
        _generate_pairs(args, todo, records, models)
    write_jsonl(args.out / TRAIN_FILE, [records[key] for key in sorted(records)])
    _export_ai_toolkit(args.out)
    logger.info("dataset %s: %d training pairs, %d held-out prompts", args.out, len(records), len(test_records))
    return 0


def _record(spec: PromptSpec, index: int, seed: int, *, with_images: bool) -> PairRecord:
    pair_id, original, transformed = _pair_names(index)
    return PairRecord(
        id=pair_id,
        caption=spec.edit_prompt,
        edit_prompt=spec.edit_prompt,
        base_prompt=spec.base_prompt,
        object=spec.object,
        material=spec.material,
        family=spec.family,
        seed=seed + index,
        original=original if with_images else None,
        transformed=transformed if with_images else None,
    )


def _as_test(record: PairRecord) -> PairRecord:
    record.id = f"test_{record.id}"
    return record


def _has_images(out: Path, record: PairRecord) -> bool:
    return all(rel is not None and (out / rel).is_file() for rel in (record.original, record.transformed))


def _generate_pairs(
    args: argparse.Namespace, todo: list[tuple[int, PromptSpec]], records: dict[str, PairRecord], models: Any
) -> None:
    from tqdm.auto import tqdm

    maker = _pair_maker(args, models)
    for index, spec in tqdm(todo, desc="pairs", unit="pair"):
        record = _record(spec, index, args.seed, with_images=True)
        assert record.seed is not None and record.original is not None and record.transformed is not None
        original, transformed = maker.make(spec, record.seed)
        _save_png(centre_crop_resize(original, args.resolution), args.out / record.original)
        _save_png(centre_crop_resize(transformed, args.resolution), args.out / record.transformed)
        records[record.id] = record
        write_jsonl(args.out / TRAIN_FILE, [records[key] for key in sorted(records)])


class PairMaker(Protocol):
    """Makes the two images of a pair; the builder's only way to generate images."""

    def make(self, spec: PromptSpec, seed: int) -> tuple[Image.Image, Image.Image]:
        """``(original, transformed)``: the image of ``spec.base_prompt``, then its edit by ``spec.edit_prompt``."""
        ...


@dataclass
class InProcessPairMaker:
    """Pairs made by the loaded models: FLUX.1-dev (``BaseImageStage``), then Kontext without a LoRA."""

    models: Any  # LoadedModels
    steps: int
    guidance: float
    size: int
    edit_steps: int
    edit_guidance: float

    def make(self, spec: PromptSpec, seed: int) -> tuple[Image.Image, Image.Image]:
        from ..stages.base_image import BaseImageStage
        from ..stages.material_edit import MaterialEditStage
        from ..stages.progress import StageControl

        original = BaseImageStage(self.models).run(
            spec.base_prompt,
            seed=seed,
            steps=self.steps,
            guidance=self.guidance,
            size=self.size,
            control=StageControl(),
        )
        transformed = MaterialEditStage(self.models).run(
            original,
            spec.edit_prompt,
            seed=seed,
            steps=self.edit_steps,
            guidance=self.edit_guidance,
            lora=None,
            lora_scale=0.0,
            control=StageControl(),
        )
        return original, transformed


def _pair_maker(args: argparse.Namespace, models: Any) -> PairMaker:
    """The preset's models (loaded unless given), with the build's step counts and the preset's defaults."""
    models = models if models is not None else _load_models(args)
    defaults = models.defaults
    return InProcessPairMaker(
        models,
        steps=args.steps or defaults.steps,
        guidance=defaults.guidance,
        size=args.size or defaults.size,
        edit_steps=args.edit_steps or defaults.edit_steps,
        edit_guidance=defaults.edit_guidance,
    )


def _load_models(args: argparse.Namespace) -> Any:
    from ..config import Settings
    from ..models.registry import load_models

    overrides: dict[str, Any] = {} if args.preset is None else {"preset": args.preset}
    return load_models(Settings(**overrides))


def _export_ai_toolkit(out: Path) -> None:
    """The ai-toolkit config of the run ``alch3mist lora train --data <out>`` does with its defaults."""
    write_ai_toolkit_export(out, TrainingRecipe(), out / CONFIG_NAME)


# --- import pairs made elsewhere ------------------------------------------------------------------------------


def _list_images(folder: Path, label: str) -> list[Path]:
    if not folder.is_dir():
        raise DatasetError(f"{label} folder {folder} does not exist")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DatasetError(f"{label} folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _match_pairs(originals: list[Path], transformed: list[Path]) -> list[tuple[Path, Path]]:
    if len(originals) != len(transformed):
        raise DatasetError(
            f"mismatched pair counts: {len(originals)} originals but {len(transformed)} transformed images; "
            "every original needs exactly one transformed image"
        )
    by_stem = {p.stem: p for p in transformed}
    if all(p.stem in by_stem for p in originals):
        return [(p, by_stem[p.stem]) for p in originals]
    logger.warning("original and transformed file names differ: pairing them in sorted order")
    return list(zip(originals, transformed, strict=True))


def _read_captions(captions: Path | None, pairs: list[tuple[Path, Path]]) -> list[str]:
    if captions is None:
        missing = [t.with_suffix(".txt") for _o, t in pairs if not t.with_suffix(".txt").is_file()]
        if missing:
            raise DatasetError(
                f"no caption for {len(missing)} transformed image(s), e.g. {missing[0]}; "
                "put a .txt beside each image or pass --captions FILE (one caption per line, in pair order)"
            )
        return [t.with_suffix(".txt").read_text(encoding="utf-8").strip() for _o, t in pairs]
    if not captions.is_file():
        raise DatasetError(f"captions file {captions} does not exist")
    lines = [line.strip() for line in captions.read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != len(pairs):
        raise DatasetError(f"captions file {captions} has {len(lines)} captions for {len(pairs)} pairs")
    return lines


def _import(args: argparse.Namespace) -> int:
    # 1. Check everything before writing anything: counts, captions, every image readable.
    pairs = _match_pairs(_list_images(args.originals, "originals"), _list_images(args.transformed, "transformed"))
    captions = []
    for (_original_path, transformed_path), raw in zip(pairs, _read_captions(args.captions, pairs), strict=True):
        caption, added = ensure_trigger(raw)
        if added:
            message = f"caption of {transformed_path.name} lacks the trigger word {TRIGGER_WORD!r}: added it"
            logger.warning(message)
            warnings.warn(message, UserWarning, stacklevel=2)
        captions.append(caption)
    images = [(_open_image(o_path), _open_image(t_path)) for o_path, t_path in pairs]
    test_size = args.test_size or 0
    if test_size >= len(pairs):
        raise DatasetError(f"--test-size {test_size} leaves no training pairs out of {len(pairs)}")

    # 2. Write the pairs; the last ``test_size`` are held out (their originals kept under test/ for the eval).
    _prepare_out_dir(args.out, overwrite=args.overwrite, resume=False)
    info = {
        "version": 1,
        "source": "import",
        "resolution": args.resolution,
        "test_size": test_size,
        "trigger_word": TRIGGER_WORD,
    }
    _check_info(args.out, info, resume=False)
    train_count = len(pairs) - test_size
    records: list[PairRecord] = []
    tests: list[PairRecord] = []
    for index, ((original, transformed), caption) in enumerate(zip(images, captions, strict=True), 1):
        pair_id, original_rel, transformed_rel = _pair_names(index)
        record = PairRecord(id=pair_id, caption=caption, edit_prompt=caption, seed=args.seed + index, source="imported")
        if index > train_count:
            (args.out / "test").mkdir(exist_ok=True)
            record.original = f"test/{ORIGINALS}_{pair_id}.png"
            _save_png(centre_crop_resize(original, args.resolution), args.out / record.original)
            tests.append(_as_test(record))
            continue
        record.original, record.transformed = original_rel, transformed_rel
        _save_png(centre_crop_resize(original, args.resolution), args.out / original_rel)
        _save_png(centre_crop_resize(transformed, args.resolution), args.out / transformed_rel)
        records.append(record)
    write_jsonl(args.out / TRAIN_FILE, records)
    write_jsonl(args.out / TEST_FILE, tests)
    _export_ai_toolkit(args.out)
    logger.info("imported %d training pairs (%d held out) into %s", len(records), len(tests), args.out)
    return 0


# --- command line ---------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="Dataset folder to create (img0/, img1/, metadata).")
    parser.add_argument(
        "--prompts",
        type=Path,
        default=None,
        help=f"Prompt file: .json prompt set or .txt of 'object | material' lines (default: {DEFAULT_PROMPTS.name}).",
    )
    parser.add_argument(
        "--originals", type=Path, default=None, help="Import: folder of original images made elsewhere."
    )
    parser.add_argument(
        "--transformed",
        type=Path,
        default=None,
        help="Import: folder of transformed images (same names or same order).",
    )
    parser.add_argument(
        "--captions",
        type=Path,
        default=None,
        help="Import: text file, one caption per pair (sorted order); default: a .txt beside each transformed image.",
    )
    parser.add_argument(
        "--preset", choices=("tiny", "full", "auto"), default=None, help="Models to generate with (default: settings)."
    )
    parser.add_argument("--limit", type=int, default=None, help="Generate at most this many training pairs.")
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help=f"Prompts held out for evaluation, never trained on (default {DEFAULT_TEST_SIZE}; 0 for imports).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the pair order and of each pair's images.")
    parser.add_argument(
        "--resolution",
        type=int,
        choices=RESOLUTIONS,
        default=None,
        help="Centre-crop and resize every image to this square side (default: keep the generated size).",
    )
    parser.add_argument("--size", type=int, default=None, help="Side of the generated base image (default: preset's).")
    parser.add_argument("--steps", type=int, default=None, help="FLUX.1-dev steps per original (default: preset's).")
    parser.add_argument("--edit-steps", type=int, default=None, help="Kontext steps per edit (default: preset's).")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace the dataset files in an existing --out folder."
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue an interrupted build in --out, skipping done pairs."
    )


def _check_args(args: argparse.Namespace) -> None:
    importing = args.originals is not None or args.transformed is not None
    if importing and (args.originals is None or args.transformed is None):
        raise DatasetError("importing pairs needs both --originals and --transformed")
    if importing and args.prompts is not None:
        raise DatasetError("give either --prompts (generate) or --originals/--transformed (import), not both")
    if importing and args.resume:
        raise DatasetError("--resume applies to generated datasets only; an import is quick: rerun it with --overwrite")
    if args.overwrite and args.resume:
        raise DatasetError("--overwrite and --resume contradict each other: choose one")
    if args.limit is not None and args.limit < 1:
        raise DatasetError("--limit must be at least 1")
    if args.test_size is not None and args.test_size < 0:
        raise DatasetError("--test-size must be 0 or more")
    if args.size is not None and (args.size < 16 or args.size % 16):
        raise DatasetError("--size must be a multiple of 16 (and at least 16)")
    if not importing and args.prompts is None:
        args.prompts = DEFAULT_PROMPTS


def build(args: argparse.Namespace, models: Any = None) -> int:
    """Check ``args`` and build (or import) the dataset; raises DatasetError on bad input.

    ``models`` (a ``LoadedModels``) reuses models already loaded; by default the preset's are loaded.
    """
    _check_args(args)
    return _import(args) if args.originals is not None else _generate(args, models)


def main(args: argparse.Namespace) -> int:
    """Build (or import) a dataset; 0 on success, 2 with a message on bad input, 1 on other failures."""
    return report_errors(lambda: build(args))


if __name__ == "__main__":  # pragma: no cover - python -m alch3mist.training.dataset
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _parser = argparse.ArgumentParser(prog="alch3mist dataset build", description=(__doc__ or "").splitlines()[0])
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
