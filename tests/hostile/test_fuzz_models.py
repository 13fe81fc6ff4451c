"""A seeded sample of damaged model files per format: each imports or is refused with one clear line."""

from __future__ import annotations

from fuzz_models import OUTCOMES, fuzz

CASES = 25  # per format, about 15 s each; `python tests/hostile/fuzz_models.py --cases 500` runs the full set


def test_damaged_model_files_never_end_in_a_traceback_or_a_hang():
    results = fuzz(CASES, seed=0, log=lambda *a: None)
    assert [f for r in results.values() for f in r["findings"]] == []
    for fmt, tally in results.items():
        assert sum(tally[name] for name in OUTCOMES.values()) == CASES
        assert tally["refused"] > 0, f"no damaged {fmt} file was refused: the damage did not reach the importer"
        assert tally["peak_mb"] < 2048, f"a damaged {fmt} file took {tally['peak_mb']} MB"
