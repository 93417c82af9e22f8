"""One study judged over seeds: the picks (and refits) of studies that share every setting but
the seed (`-P seed=S`: the validation split's and the trainings'), side by side with the lowest
and the mean, so that the report says what the study delivers for any seed, not for one draw."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from signlab.contract import EFFECTIVE_SUFFIX, SEED_PARAM, STUDY_DEFINITION_PARAMS, TEST_ACCURACY, VAL_ACCURACY
from signlab.serving.report_page import Table

if TYPE_CHECKING:
    from signlab.serving.report import Row


def setting(params: dict[str, str], key: str) -> str | None:
    """A run's param as used: `<key>.effective` where an entry point logged another value first."""
    return params.get(f"{key}{EFFECTIVE_SUFFIX}", params.get(key))


def seed_of(row: Row) -> str:
    """The seed of the study a pick comes from: its trial run's (the split's and the training's)."""
    return row.runs[0].data.params.get(SEED_PARAM, "?")


@dataclass
class SeedGroup:
    """The picks of one study definition, one per study, ordered by seed, then by when they ran."""

    rows: list[Row]

    @property
    def seeds(self) -> list[str]:
        """The seeds, each once, in order."""
        return list(dict.fromkeys(seed_of(r) for r in self.rows))

    def counted(self) -> list[Row]:
        """One study per seed: the latest where a seed was run more than once (a study run again
        with the same seed repeats one draw; counting both would weigh that seed twice)."""
        return list({seed_of(r): r for r in self.rows}.values())  # rows run in order within a seed: the last wins

    def picks(self) -> list[float]:
        """Each seed's pick's test accuracy (the trial's, reported, never used to choose)."""
        return [v for r in self.counted() if (v := r.metric(TEST_ACCURACY)) is not None]

    def refits(self) -> list[float]:
        """Each seed's pick's refit mean test accuracy, where it was refit."""
        return [v for r in self.counted() if r.refit is not None and (v := r.refit.metric(TEST_ACCURACY)) is not None]


def over_seeds(ours: list[Row]) -> list[SeedGroup]:
    """The studies' picks grouped by definition (`STUDY_DEFINITION_PARAMS` of their parent
    runs), where a group holds at least two seeds."""
    groups: dict[tuple[str | None, ...], list[Row]] = {}
    for row in ours:
        if row.kind == "study" and row.chosen and row.settings:
            groups.setdefault(tuple(setting(row.settings, k) for k in STUDY_DEFINITION_PARAMS), []).append(row)
    return [SeedGroup(sorted(rows, key=_seed_order)) for rows in groups.values()
            if len({seed_of(r) for r in rows}) > 1]


def _seed_order(row: Row) -> tuple[int, str, int]:
    """By seed, then the studies of one seed in the order they ran."""
    seed = seed_of(row)
    started = row.runs[0].info.start_time or 0
    return (int(seed), "", started) if seed.lstrip("-").isdigit() else (1 << 62, seed, started)


def _summary(values: list[float], seeds: int) -> str:
    """Mean ± std and the lowest, saying over how many seeds where some have no figure yet."""
    if not values:
        return ""
    spread = f" ± {100 * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    partial = f" ({len(values)} of {seeds} seeds)" if len(values) < seeds else ""
    return f"{100 * statistics.fmean(values):.2f}{spread}, lowest {100 * min(values):.2f}{partial}"


def seeds_table(groups: list[SeedGroup], acc: Callable[..., str]) -> Table:
    """One row per study of each group (its seed, trials, pick and refit with their intervals over
    photos), then the group's mean ± std over seeds and its lowest seed. `acc` formats an accuracy
    with its spread and interval (the report's own formatter)."""
    heads = ["study", "seed", "trials", "pick", "val acc %", "pick test acc %", "refit test acc %", "refit seeds"]
    rows = []
    for group in groups:
        for row in group.rows:
            refit = row.refit
            trials = row.study_trials
            rows.append([row.study or "", seed_of(row), "" if trials is None else str(trials), f"trial {row.trial}",
                         acc(row.metric(VAL_ACCURACY)), acc(row.metric(TEST_ACCURACY), interval=row.interval()),
                         acc(refit.metric(TEST_ACCURACY), refit.spread(TEST_ACCURACY), refit.interval()) if refit else "",
                         str(refit.seeds) if refit else ""])
        n = len(group.seeds)
        rows.append([f"over {n} seeds", ", ".join(group.seeds), "", "", "", _summary(group.picks(), n),
                     _summary(group.refits(), n), ""])
    caption = ("Studies with the same settings but the seed (`-P seed=S`: the validation split's and the "
               "trainings'): each seed's pick (chosen on validation) and its refit on the whole training file, "
               "with 95% intervals over photos; the last row of each study: the mean ± std over seeds and the "
               "lowest seed, what the study delivers for a seed nobody chose (a seed run more than once "
               "counts once, by its latest study).")
    return Table("The studies over seeds", heads, rows,
                 {"seed", "trials", "val acc %", "pick test acc %", "refit test acc %", "refit seeds"}, caption)


def seeds_data(groups: list[SeedGroup]) -> list[dict]:
    """The same for report.json: per group, its seeds (each once), the studies with their seeds and
    figures (fractions; `counted`: the study that stands for its seed), and the mean and lowest over
    seeds of the picks' test accuracy and of the refit means."""

    def stats(values: list[float]) -> dict:
        return {"mean": statistics.fmean(values) if values else None,
                "std": statistics.stdev(values) if len(values) > 1 else None,
                "min": min(values) if values else None}

    out = []
    for group in groups:
        studies = []
        counted = group.counted()
        for row in group.rows:
            interval = row.interval()
            refit = row.refit
            refit_interval = refit.interval() if refit else None
            studies.append({
                "study": row.study, "seed": seed_of(row), "counted": any(row is c for c in counted),
                "trials": row.study_trials, "trial": row.trial,
                "run_id": row.runs[0].info.run_id, "val_accuracy": row.metric(VAL_ACCURACY),
                TEST_ACCURACY: row.metric(TEST_ACCURACY),
                "test_ci_low": interval.low if interval else None, "test_ci_high": interval.high if interval else None,
                "refit": None if refit is None else {
                    "test_accuracy_mean": refit.metric(TEST_ACCURACY), "test_std": refit.spread(TEST_ACCURACY),
                    "seeds": refit.seeds, "test_ci_low": refit_interval.low if refit_interval else None,
                    "test_ci_high": refit_interval.high if refit_interval else None}})
        out.append({"seeds": group.seeds, "studies": studies, "pick_test_accuracy": stats(group.picks()),
                    "refit_mean_test_accuracy": stats(group.refits())})
    return out
