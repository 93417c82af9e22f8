"""The report's tables, headline and choice of our best model, from MLflow run entities built
here (no store, no training): formatting of mean ± std, min–max, differences in points, and
a choice made on validation, never on test."""

from __future__ import annotations

from mlflow.entities import Metric, Param, Run, RunData, RunInfo

from signlab.contract import N_PARAMS, REFIT_SEED, TEST_ACCURACY, VAL_ACCURACY, VAL_AUG_ACCURACY
from signlab.runs.references import best_clean_reference, load_references, watched_test
from signlab.serving.over_seeds import over_seeds, seeds_data, seeds_table
from signlab.serving.report import Row, _acc, best_row, headline, ours_table, references_table
from signlab.serving.report_page import markdown


def run(run_id: str, seed: int, seed_param: str = "seed", **metrics: float) -> Run:
    """A FINISHED run holding `metrics` and its seed, as MLflow returns one."""
    info = RunInfo(run_id, "1", "tester", "FINISHED", 0, 1, "active", run_name=run_id)
    data = RunData(metrics=[Metric(k, v, 0, 0) for k, v in metrics.items()], params=[Param(seed_param, str(seed))])
    return Run(info, data)


def study_row(name: str, val: float, test: float, *, aug: float = 0.5, params: int = 1000, chosen: bool = True) -> Row:
    trial = run(f"{name}-trial0", 0, **{VAL_ACCURACY: val, TEST_ACCURACY: test, VAL_AUG_ACCURACY: aug, N_PARAMS: params})
    return Row(f"{name} trial 0 (best)", "mlp", "study", [trial], study=name, trial=0, chosen=chosen)


def test_watched_test_flags():
    by_key = {ref.key: watched_test(ref) for ref in load_references()}
    assert by_key["dasgupta"] == by_key["cnn1_aug"] == "yes"
    assert by_key["cnn2_aug"] == by_key["cnn3_aug"] == "maybe"
    assert by_key["jain"] == by_key["nn4"] == ""
    assert best_clean_reference("cnn").key == "santos_cnn_aug"


def test_references_table_puts_our_seeds_beside_the_published_figure():
    refs = {r.key: r for r in load_references()}
    nn2 = Row(refs["nn2"].model, "mlp", "reference",
              [run("aaaaaaaa11", 0, **{TEST_ACCURACY: 0.80, VAL_ACCURACY: 0.90}),
               run("bbbbbbbb22", 1, **{TEST_ACCURACY: 0.82, VAL_ACCURACY: 0.92})], reference=refs["nn2"])
    table = references_table([nn2])
    assert table.column("model") == [r.model for r in load_references()], "every published row, in file order"
    cells = dict(zip(table.heads, table.rows[table.column("model").index(refs["nn2"].model)], strict=True))
    assert cells["published acc %"] == "77.96" and cells["seeds"] == "2"
    assert cells["test acc %"] == "81.00 ± 1.41" and cells["val acc %"] == "91.00 ± 1.41"
    assert cells["diff (pts)"] == "+3.04" and cells["runs"] == "aaaaaaaa, bbbbbbbb"
    unrun = dict(zip(table.heads, table.rows[table.column("model").index(refs["nn1"].model)], strict=True))
    assert unrun["published acc %"] == "18.61" and unrun["test acc %"] == unrun["seeds"] == unrun["diff (pts)"] == ""
    assert {r.family for r in load_references() if r.model in references_table([nn2], "cnn").column("model")} == {"cnn"}


def test_ours_table_shows_the_refit_over_seeds_and_what_mattered():
    row = study_row("tiny", 0.9, 0.85, params=12345)
    row.refit = Row("tiny refit of trial 0", "mlp", "refit",
                    [run("r0", 0, REFIT_SEED, **{TEST_ACCURACY: 0.84}), run("r1", 1, REFIT_SEED, **{TEST_ACCURACY: 0.88})],
                    study="tiny", trial=0)
    row.importances = {"units": 0.7, "alpha": 0.2, "a": 0.04, "b": 0.03, "c": 0.02, "d": 0.01}
    reference = Row("NN 2", "mlp", "reference", [run("x", 0, **{TEST_ACCURACY: 0.5})])
    table = ours_table([row, reference])
    assert table.column("model") == ["tiny trial 0 (best)"], "only the studies' rows"
    cells = dict(zip(table.heads, table.rows[0], strict=True))
    assert cells["params"] == "12,345" and cells["val acc %"] == "90.00" and cells["trial test acc %"] == "85.00"
    assert cells["refit test acc %"] == "86.00 ± 2.83" and cells["refit min–max"] == "84.00–88.00"
    assert cells["seeds"] == "2" and cells["what mattered (fANOVA)"] == "units 0.70, alpha 0.20, a 0.04, b 0.03, c 0.02"
    md = markdown(table).splitlines()
    assert md[0].startswith("| model | family | params |")
    assert md[1].startswith("|---|---|---:|---:|"), "numeric columns right-aligned"
    assert markdown(ours_table([])) == "(no rows)\n"


def test_best_row_is_chosen_on_validation_never_on_test():
    high_test = study_row("a", val=0.90, test=0.99)
    best = study_row("b", val=0.95, test=0.80)
    not_chosen = study_row("c", val=0.99, test=0.99, chosen=False)  # a study's second trial
    assert best_row([high_test, best, not_chosen]) is best
    # ties on validation accuracy: the perturbed copy's accuracy, then fewer parameters
    more_robust = study_row("d", val=0.95, test=0.5, aug=0.9)
    assert best_row([best, more_robust]) is more_robust
    smaller = study_row("e", val=0.95, test=0.5, params=10)
    assert best_row([best, smaller]) is smaller
    assert best_row([]) is None
    # no study yet: the best reference reproduction by validation
    refs = [Row(m, "mlp", "reference", [run(m, 0, **{VAL_ACCURACY: v, TEST_ACCURACY: 0.5})]) for m, v in (("x", .7), ("y", .8))]
    assert best_row(refs).model == "y"


def test_headline_compares_the_refit_with_the_best_clean_reference():
    row = study_row("tiny", 0.9, 0.85)
    row.refit = Row("tiny refit of trial 0", "mlp", "refit",
                    [run("r0", 0, REFIT_SEED, **{TEST_ACCURACY: 0.97}), run("r1", 1, REFIT_SEED, **{TEST_ACCURACY: 0.99})],
                    study="tiny", trial=0)
    line = headline(row)
    assert line.startswith("Our best model, chosen on validation, is **tiny**, the refit of its trial 0 (2 seeds): "
                           "**98.00% ± 1.41** test accuracy, against **99.48%** for **NN 4 (NN 2 + 3x augmentation)**")
    assert line.endswith("the best published figure that did not watch the test split: **-1.48 points**.")
    assert "**+0.47 points**" in headline(row, "cnn"), "against V. Santos & T. Pereira's CNN (97.53%)"
    assert headline(None) == "No runs of ours yet."


def test_figures_carry_their_interval_over_photos_and_quick_runs_say_so():
    row = study_row("tiny", 0.9, 0.85)
    row.runs[0].data._add_metric(Metric("test_accuracy_ci_low", 0.8123, 0, 0))
    row.runs[0].data._add_metric(Metric("test_accuracy_ci_high", 0.8871, 0, 0))
    cells = dict(zip(ours_table([row]).heads, ours_table([row]).rows[0], strict=True))
    assert cells["trial test acc %"] == "85.00 (81.23–88.71)"
    assert headline(row).startswith("Our best model, chosen on validation, is **tiny trial 0 (best)**: "
                                    "**85.00% (81.23–88.71)** test accuracy, against **99.48%**")
    row.runs[0].data._add_param(Param("subset", "20"))
    assert row.quick and ours_table([row]).rows[0][0] == "tiny trial 0 (best) (quick)"
    assert headline(row).startswith("Quick run: ") and "published" in headline(row) and "points" not in headline(row)


def seeded_pick(name: str, seed: int, test: float, refits: list[float], **settings: str) -> Row:
    """A study's pick (trial run with its seed) with its refit, from a parent with `settings`."""
    trial = run(f"{name}-t", seed, **{VAL_ACCURACY: 0.99, TEST_ACCURACY: test})
    row = Row(f"{name} trial 3 (best)", "cnn", "study", [trial], study=name, trial=3, chosen=True,
              settings={"family": "cnn", "space": "{...}", "seed": "file", **settings}, study_trials=30)
    row.refit = Row(f"{name} refit", "cnn", "refit",
                    [run(f"{name}-r{i}", i, REFIT_SEED, **{TEST_ACCURACY: v}) for i, v in enumerate(refits)], study=name, trial=3)
    return row


def test_studies_that_differ_only_in_their_seed_are_judged_together():
    s0 = seeded_pick("cnn_s0", 0, 0.9965, [0.999, 0.9995])
    s7 = seeded_pick("cnn_s7", 7, 0.9934, [0.992, 0.9934], **{"space.effective": "{...}"})
    other = seeded_pick("mlp_s0", 0, 0.80, [0.81], family="mlp")  # another definition, one seed: no group
    lonely = seeded_pick("cnn_s0_again", 0, 0.99, [0.99], max_epochs="9")  # another definition too
    groups = over_seeds([s7, other, lonely, s0, study_row("x", 0.9, 0.9, chosen=False)])
    assert len(groups) == 1 and groups[0].seeds == ["0", "7"], "ordered by seed"
    table = seeds_table(groups, _acc)
    assert table.column("study") == ["cnn_s0", "cnn_s7", "over 2 seeds"]
    assert table.column("pick test acc %")[:2] == ["99.65", "99.34"]
    assert table.column("refit test acc %")[1] == "99.27 ± 0.10"
    assert table.column("pick test acc %")[2] == "99.50 ± 0.22, lowest 99.34"
    assert table.column("refit test acc %")[2] == "99.60 ± 0.46, lowest 99.27"
    data = seeds_data(groups)[0]
    assert data["seeds"] == ["0", "7"] and data["studies"][1]["trials"] == 30
    assert data["pick_test_accuracy"]["min"] == 0.9934
    assert abs(data["refit_mean_test_accuracy"]["mean"] - (0.99925 + 0.9927) / 2) < 1e-12
    assert over_seeds([s0]) == [], "one seed is not a comparison over seeds"
    # seed 7 run again, later: listed, but the seed counts once, by its latest study
    s7_again = seeded_pick("cnn_s7_again", 7, 0.9970, [0.9990], **{"space.effective": "{...}"})
    s7_again.runs[0].info._start_time = 5
    again = over_seeds([s7_again, s7, s0])[0]  # the studies of one seed in the order they ran
    table = seeds_table([again], _acc)
    assert table.column("study") == ["cnn_s0", "cnn_s7", "cnn_s7_again", "over 2 seeds"]
    assert table.column("seed")[3] == "0, 7" and again.picks() == [0.9965, 0.9970]
    assert table.column("pick test acc %")[3] == "99.67 ± 0.04, lowest 99.65"
    assert [s["counted"] for s in seeds_data([again])[0]["studies"]] == [True, False, True]
    assert seeds_data([again])[0]["seeds"] == ["0", "7"]
    s7.refit = None  # still running: the summary says over how many seeds
    assert seeds_table(over_seeds([s0, s7]), _acc).column("refit test acc %")[2] == "99.92, lowest 99.92 (1 of 2 seeds)"
