"""Final model selection: hand-computed scores, tie-breaks, missing terms, oracle runs, reproduce commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrad.analysis import SelectionConfig, load_sweep, rank_runs, reproduce_command, threshold_comparison
from cxrad.analysis.leaderboard import formula, markdown_table
from cxrad.analysis.sweep import varied_settings
from cxrad.select import select
from cxrad.threshold import fit_threshold
from tests.sweep_factory import write_run

CONFIG = SelectionConfig(weights={"nodule_auroc": 1.0, "image_auroc": 1.0, "fpr": 0.5})
VAL = {"small_nodule_auroc": "val_selection_nodule_auroc", "image_auroc": "val_image_auroc", "fpr": "val_fpr"}


def _sweep(rows: list[dict]) -> pd.DataFrame:
    """Runs described by their validation terms (the keys of ``VAL``), as the sweep table names them."""
    base = {"threshold_is_oracle": False, "val_nodule_band": "10-20 mm", "val_nodule_n": 30}
    return pd.DataFrame([{**base, **{VAL.get(k, k): v for k, v in row.items()}} for row in rows])


def test_ranking_by_hand() -> None:
    sweep = _sweep(
        [
            {"run": "A", "small_nodule_auroc": 0.80, "image_auroc": 0.90, "fpr": 0.10},  # 0.8+0.9-0.05 = 1.65
            {"run": "B", "small_nodule_auroc": 0.70, "image_auroc": 0.95, "fpr": 0.05},  # 1.625
            {"run": "C", "small_nodule_auroc": 0.75, "image_auroc": 0.92, "fpr": 0.04},  # 1.65, ties A
            {"run": "D", "small_nodule_auroc": None, "image_auroc": 0.99, "fpr": 0.00},  # 0.99*2.5/1.5 = 1.65
            {"run": "E", "small_nodule_auroc": 0.90, "image_auroc": 0.99, "fpr": 0.00, "threshold_is_oracle": True},
        ]
    )
    board, notes = rank_runs(sweep, CONFIG)
    # C beats A on the tie by image_auroc; D lacks a term; E's oracle FPR is not deployable
    assert board["run"].tolist() == ["C", "A", "B", "D", "E"]
    assert board["rank"].tolist() == [1, 2, 3, 4, 5]
    scores = dict(zip(board["run"], board["score"], strict=True))
    assert scores["A"] == pytest.approx(1.65) and scores["B"] == pytest.approx(1.625)
    assert scores["D"] == pytest.approx(0.99 * 2.5 / 1.5)
    row_b = board.set_index("run").loc["B"]
    assert (row_b["term_nodule_auroc"], row_b["term_image_auroc"], row_b["term_fpr"]) == pytest.approx(
        (0.70, 0.95, -0.025)
    )
    assert "missing nodule_auroc" in board.set_index("run").loc["D", "notes"]
    assert "not deployable" in board.set_index("run").loc["E", "notes"]
    assert notes == []


def test_term_missing_everywhere_is_dropped_and_renormalised() -> None:
    sweep = _sweep(
        [
            {"run": "x", "small_nodule_auroc": None, "image_auroc": 0.8, "fpr": 0.2},  # (0.8-0.1)*2.5/1.5
            {"run": "y", "small_nodule_auroc": None, "image_auroc": 0.7, "fpr": 0.0},  # 0.7*2.5/1.5
        ]
    )
    board, notes = rank_runs(sweep, CONFIG)
    assert board["run"].tolist() == ["x", "y"]
    assert board["score"].tolist() == pytest.approx([0.7 * 2.5 / 1.5, 0.7 * 2.5 / 1.5])  # tie -> higher auroc
    assert "term_nodule_auroc" not in board.columns
    assert notes and "missing in every run" in notes[0]
    assert board["complete"].all()


def test_full_tie_falls_back_to_lower_fpr_then_run_name() -> None:
    sweep = _sweep(
        [
            {"run": "b", "small_nodule_auroc": 0.7, "image_auroc": 0.8, "fpr": 0.1},
            {"run": "a", "small_nodule_auroc": 0.7, "image_auroc": 0.8, "fpr": 0.1},
        ]
    )
    assert rank_runs(sweep, CONFIG)[0]["run"].tolist() == ["a", "b"]


def test_nodule_term_names_its_size_band() -> None:
    row = {"run": "a", "small_nodule_auroc": 0.7, "image_auroc": 0.8, "fpr": 0.1, "val_nodule_n": 24}
    board, notes = rank_runs(_sweep([row]), CONFIG)
    assert "nodule term: 10-20 mm (24 validation positives)" in board.loc[0, "notes"]
    other = {**row, "run": "b", "val_nodule_band": "20-30 mm"}
    assert any("different size bands" in note for note in rank_runs(_sweep([row, other]), CONFIG)[1])


def test_two_sided_view_shortcut_penalises_over_correction() -> None:
    config = SelectionConfig(weights={"image_auroc": 1.0, "view_shortcut": 1.0})
    rows = [
        {"run": "over", "image_auroc": 0.8, "val_view_shortcut": 0.2},  # leakage 0.3: over-corrected
        {"run": "fair", "image_auroc": 0.8, "val_view_shortcut": 0.01},
    ]
    board, _ = rank_runs(_sweep(rows), config)
    assert board["run"].tolist() == ["fair", "over"]


def test_selection_never_reads_a_test_label(tmp_path: Path) -> None:
    """The winner is decided by validation metrics: scrambling every test label and test metric changes nothing."""
    for i, (val_auroc, test_auroc) in enumerate([(0.70, 0.95), (0.85, 0.60), (0.80, 0.90)]):
        write_run(tmp_path / f"{i}_run", image_auroc=test_auroc, val_image_auroc=val_auroc, seed=i)
    before = rank_runs(load_sweep(tmp_path), SelectionConfig.load())[0]["run"].tolist()
    rng = np.random.default_rng(0)
    for run in tmp_path.glob("*_run"):
        predictions = pd.read_csv(run / "predictions.csv")
        predictions["label"] = rng.permutation(predictions["label"].to_numpy())
        predictions.to_csv(run / "predictions.csv", index=False)
        metrics = json.loads((run / "metrics.json").read_text())
        for key in ("image_auroc", "fpr", "tpr", "view_shortcut", "nodule_auroc", "small_nodule_auroc"):
            metrics[key] = rng.uniform() if not isinstance(metrics[key], dict) else {"auroc": rng.uniform()}
        (run / "metrics.json").write_text(json.dumps(metrics))
    after = rank_runs(load_sweep(tmp_path), SelectionConfig.load())[0]["run"].tolist()
    assert before == after == ["1_run", "2_run", "0_run"]  # validation AUROC order, not test


def test_config_rejects_unknown_or_negative_weights() -> None:
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['aupr'\]"):
        SelectionConfig(weights={"aupr": 1.0})
    with pytest.raises(ValueError, match="must be >= 0"):
        SelectionConfig(weights={"fpr": -1.0})
    default = SelectionConfig.load()
    assert formula(default) == ("score = 1*val nodule_auroc + 1*val image_auroc - 0.5*val fpr - 0.5*val view_shortcut")
    with pytest.raises(ValueError, match="now nodule_auroc"):
        SelectionConfig(weights={"small_nodule_auroc": 1.0})


def test_reproduce_command_quotes_and_forces_a_single_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "0_padim", overrides=("model=padim", "data.source.findings=[nodule,mass]"))
    assert reproduce_command(run) == "python -m cxrad.run model=padim 'data.source.findings=[nodule,mass]'"
    run = write_run(tmp_path / "1_padim", overrides=("experiment=research_sweep", "model=padim"))
    assert reproduce_command(run).endswith("experiment=research_sweep model=padim hydra.mode=RUN")
    # a job that ran the default model of its day is named by the model it ran, not by today's default
    run = write_run(tmp_path / "2_default", overrides=("backbone=resnet18",), model="patchcore")
    assert reproduce_command(run) == "python -m cxrad.run backbone=resnet18 model=patchcore"


def test_threshold_comparison_refits_each_rule(tmp_path: Path) -> None:
    run = write_run(tmp_path / "0_run")
    methods = {"percentile": {"q": 90.0}, "per_group": {"q": 90.0, "min_group_size": 5}, "f1_oracle": {}}
    table = threshold_comparison(run, methods).set_index("method")
    val, test = pd.read_csv(run / "val_scores.csv"), pd.read_csv(run / "predictions.csv")
    calibration = val[val["val_role"] == "calibration"]  # abnormal validation films never set a threshold
    cut = fit_threshold("percentile", calibration["score"].to_numpy(), q=90.0).value
    normal = test["label"] == 0
    assert table.loc["percentile", "fpr"] == pytest.approx((test.loc[normal, "score"] >= cut).mean())
    assert table.loc["percentile", "threshold"] == f"{cut:.4g}"
    assert "AP" in table.loc["per_group", "threshold"] and "PA" in table.loc["per_group", "threshold"]
    assert bool(table.loc["f1_oracle", "oracle"]) and not bool(table.loc["percentile", "oracle"])
    ap = normal & (test["view"] == "AP")
    assert table.loc["percentile", "fpr_ap_normals"] == pytest.approx((test.loc[ap, "score"] >= cut).mean())


def test_select_writes_both_leaderboards_and_names_the_winner(tmp_path: Path) -> None:
    write_run(tmp_path / "0_patchcore", image_auroc=0.7, overrides=("model=patchcore",))
    write_run(tmp_path / "1_padim", model="padim", image_auroc=0.9, overrides=("model=padim",), seed=1)
    text = select(tmp_path)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert board["run"].tolist() == ["1_padim", "0_patchcore"]
    assert "## Selected: 1_padim" in text and "python -m cxrad.run model=padim" in text
    assert (tmp_path / "leaderboard.md").read_text() == text
    assert (tmp_path / "threshold_comparison.csv").is_file()
    assert len(load_sweep(tmp_path)) == 2  # the leaderboard files do not count as runs
    assert "settings" not in text  # the runs differ only in model, which has a column of its own
    assert "Test metrics of the selected run" in text and "image_auroc 0.900 [0.850, 0.950]" in text
    paired = next(line for line in text.splitlines() if line.startswith("- none (1_padim) vs none (0_patchcore)"))
    assert "within-view AUROC" in paired and "image AUROC" in paired and "[" in paired


def test_leaderboard_names_the_settings_that_tell_runs_apart(tmp_path: Path) -> None:
    shared = ("experiment=research_sweep", "metadata_conditioning=film_normative")
    write_run(tmp_path / "0_patchcore", image_auroc=0.9, overrides=(*shared, "metadata_conditioning.map_units=sd"))
    write_run(
        tmp_path / "1_patchcore", image_auroc=0.8, overrides=(*shared, "metadata_conditioning.map_units=detector")
    )
    write_run(tmp_path / "2_padim", model="padim", image_auroc=0.7, overrides=(*shared, "model=padim"))
    lines = select(tmp_path).splitlines()
    header = next(line for line in lines if line.startswith("| rank"))
    rows = {line.split(" | ")[1]: line for line in lines if line.startswith("| ") and "_p" in line.split(" | ")[1]}
    assert "| conditioning | settings |" in header
    assert "| metadata_conditioning.map_units=sd |" in rows["0_patchcore"]
    assert "| metadata_conditioning.map_units=detector |" in rows["1_patchcore"]
    assert "map_units" not in rows["2_padim"] and "model=padim" not in rows["2_padim"]  # model has its own column
    assert not any("experiment=" in row for row in rows.values())  # shared by every run: nothing to tell apart
    assert "/ metadata_conditioning.map_units=sd / threshold" in "\n".join(lines)  # the selected run's line


def test_varied_settings_keep_additions_and_deletions_apart() -> None:
    runs = [
        ("+metadata_conditioning.scale=false", "threshold.method=gmm"),
        ("metadata_conditioning.scale=true", "threshold.method=otsu"),
        ("~backbone.layers.fastflow",),
    ]
    assert varied_settings(runs) == [
        "metadata_conditioning.scale=false",  # +key= sets the same key as key=
        "metadata_conditioning.scale=true",
        "~backbone.layers.fastflow",  # a deletion stays one; threshold.method has its own column
    ]


def test_markdown_table_formats_missing_and_pipes() -> None:
    table = markdown_table(pd.DataFrame({"a": [np.nan], "b": ["x|y"], "c": [True]}))
    assert table.splitlines()[-1] == "| - | x\\|y | yes |"
