"""The fused score: calibrated tail probabilities of the format's rarity, the error and the n-gram likelihood."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from monitor.core import bundle as bundle_lib
from monitor.core.bundle import Bundle
from monitor.core.format_table import FormatTable
from monitor.core.fusion import TailCalibration
from monitor.core.score import Scorer
from monitor.core.signature import FormatReader


def test_a_tail_probability_falls_as_the_value_rises_and_keeps_falling_past_the_training_maximum() -> None:
    rng = np.random.default_rng(0)
    calibration = TailCalibration.fit(rng.lognormal(0, 1, 5_000))
    values = np.linspace(-1, 80, 400)
    p = calibration.p(values)
    assert np.all(np.diff(p) <= 0) and p[0] == 1.0 and np.all(p > 0)
    assert calibration.p(np.array([60.0]))[0] < calibration.p(np.array([40.0]))[0] < 1 / 5_001
    assert calibration.p(np.array([np.median(rng.lognormal(0, 1, 5_000))]))[0] == pytest.approx(0.5, abs=0.03)


def test_the_format_table_keeps_shares_examples_and_a_long_tail() -> None:
    sequences = ["AB1"] * 60 + ["AB12"] * 30 + ["A-1", "B-2", "C-3", "D-4"] + ["x"] * 6
    table = FormatTable.learn(sequences, max_formats=3)
    assert table.counts == {"AA9": 60, "AA99": 30, "a": 6} and table.total == 100
    assert (table.tail_records, table.tail_formats) == (4, 1)
    assert table.examples["AA99"] == ["AB12"]
    assert table.share("AA9") == 0.6 and table.share("A-9") == 0.0
    rarity = table.rarity(["AA9", "AA99", "a", "A-9", "new"])
    assert list(rarity) == sorted(rarity, reverse=True)[:3] + list(rarity[3:])
    assert rarity[3] == rarity[4] == pytest.approx(5 / 101)  # in the tail or unseen: at most as rare as the tail
    assert FormatTable.from_dict(json.loads(json.dumps(table.to_dict()))) == table


def test_rare_valid_formats_score_between_common_ones_and_formats_never_seen(serial_bundle: Bundle) -> None:
    scorer = Scorer(serial_bundle)
    table = scorer.training_formats
    common = [name for name, n in table.counts.items() if n / table.total > 0.1]
    rare = [name for name, n in table.counts.items() if n / table.total < 0.1]
    assert common and rare and table.total == serial_bundle.metadata["training_rows"]
    common_examples = [e for name in common for e in table.examples[name]]
    rare_examples = [e for name in rare for e in table.examples[name]][:5]
    unseen = ["AB-121-E", "ab121e", "A1B2C3D4", "PHE-SER-CYS"]
    fused = {kind: scorer.score(xs).fused for kind, xs in
             (("common", common_examples), ("rare", rare_examples), ("unseen", unseen))}
    assert np.median(fused["common"]) < np.median(fused["rare"]) < np.min(fused["unseen"])
    assert scorer.fused_threshold > np.max(fused["common"])


def test_scores_carry_formats_and_training_shares(serial_bundle: Bundle) -> None:
    scorer = Scorer(serial_bundle)
    scores = scorer.score(["AB121E", "PHE-SER-CYS"])
    assert scores.formats.of_each() == ["AA999A", "AAA-AAA-AAA"]
    assert scores.format_shares[0] == pytest.approx(scorer.training_formats.share("AA999A")) and \
        scores.format_shares[0] > 0.1
    assert scores.format_shares[1] == 0.0
    assert scorer.format_note("AAA-AAA-AAA") == "format AAA-AAA-AAA never seen in training"
    assert scorer.format_note("AA999A") is None
    values, ranks, flags = scores.by("fused")
    assert ranks[1] == 100.0 and flags[1] and values[1] > values[0]
    assert scores.by("autoencoder")[0] is scores.errors


def test_a_saved_bundle_fuses_the_same_and_a_version_1_bundle_scores_by_its_error_alone(
        serial_bundle: Bundle, bundle_dir: Path, tmp_path: Path) -> None:
    probes = ["AB121E", "DN176", "PHE-SER-CYS", "ab121e", "ZZ999"]
    assert np.allclose(Scorer(bundle_lib.load(bundle_dir)).score(probes).fused, Scorer(serial_bundle).score(probes).fused)
    old = tmp_path / "v1"
    shutil.copytree(bundle_dir, old)
    manifest = json.loads((old / bundle_lib.MANIFEST).read_text())
    for name in ("formats.json", "fusion.json", "fused_scores.npy", "ngram.npz"):
        (old / name).unlink()
        manifest["checksums"].pop(name)
    manifest["format_version"] = 1
    (old / bundle_lib.MANIFEST).write_text(json.dumps(manifest))
    loaded = bundle_lib.load(old)
    assert loaded.fusion is None
    scorer = Scorer(loaded)
    scores = scorer.score(probes)
    assert list(np.argsort(scores.fused)) == list(np.argsort(scores.errors))  # the error's tail alone
    assert scorer.training_format_shares() == {} and scorer.format_note("AA999A") is None


def test_a_changed_format_table_is_caught_by_its_checksum(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(bundle_dir, copy)
    (copy / "formats.json").write_text(json.dumps(FormatTable({"AA": 1}, 1).to_dict()))
    with pytest.raises(bundle_lib.BundleError, match="formats.json does not match the checksum"):
        bundle_lib.load(copy)


def test_the_training_table_accounts_for_every_row_and_its_examples_have_their_format(serial_bundle: Bundle) -> None:
    table = Scorer(serial_bundle).training_formats
    assert sum(table.counts.values()) + table.tail_records == table.total
    for name, examples in table.examples.items():
        assert examples and FormatReader().read(examples).names == [name]
