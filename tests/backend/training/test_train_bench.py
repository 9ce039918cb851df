"""bench/train.py: the target-set sizes at the real Kontext shapes (meta device) and its CPU form of the step timer."""

from __future__ import annotations

from bench import train as bench_train


def test_target_sets_have_the_sizes_of_flux_kontext_dev() -> None:
    rank, inner, mlp, double, single = 16, 3072, 4 * 3072, 19, 38  # FLUX.1 [dev]: 24 heads x 128, 19 + 38 blocks
    attention = rank * (double * 8 * (inner + inner) + single * 3 * (inner + inner))  # q/k/v/out x 2 streams; q/k/v
    feed_forward = rank * (double * 4 * (inner + mlp) + single * (inner + mlp))  # ff + ff_context; proj_mlp
    modulation_and_out = rank * (
        double * 2 * (inner + 6 * inner) + single * ((inner + 3 * inner) + (inner + mlp + inner))
    )
    expected = {
        "attention": (266, attention),
        "attention-ff": (380, attention + feed_forward),
        "all-linear": (494, attention + feed_forward + modulation_and_out),
    }
    rows = {row.targets: row for row in bench_train.targets_table(rank) if row.model == "FLUX.1 Kontext [dev]"}
    assert {name: (row.layers, row.trainable_params) for name, row in rows.items()} == expected
    assert round(rows["all-linear"].file_mib) == 164  # the ~172 MB (10^6 bytes) of a rank-16 ai-toolkit FLUX LoRA
    assert round(rows["attention"].file_mib) == 50


def test_the_step_benchmark_runs_on_the_cpu_with_the_tiny_transformer() -> None:
    results = bench_train.main(["--tiny", "--sizes", "16", "--steps", "1", "--targets", "all-linear", "--rank", "2"])
    assert [(r.size, r.gradient_checkpointing) for r in results] == [(16, False), (16, True)]  # type: ignore[union-attr]
    assert all(r.median and r.median > 0 and r.trainable_params > 0 for r in results)  # type: ignore[union-attr]
