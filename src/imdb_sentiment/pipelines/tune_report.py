"""A search's tables and page: ``trials.csv`` and ``tune-report.html`` (one self-contained file, figures
embedded like report.html): the trials table, the optimisation history and the parameter importances
(fANOVA, optuna.importance), drawn by Optuna's own matplotlib plots."""

from __future__ import annotations

import html
import logging
import warnings
from pathlib import Path
from typing import Any

from imdb_sentiment.io_utils import atomic_path, write_text_atomic
from imdb_sentiment.pipelines.report import STYLE, _image
from imdb_sentiment.runs import now_utc

logger = logging.getLogger("imdb_sentiment.tune")


def write_tune_report(
    study: Any, output_dir: Path, best: dict[str, Any] | None, hand_set: dict[str, Any] | None = None
) -> list[Path]:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "duration", "user_attrs"))
    trials_csv = output_dir / "trials.csv"
    with atomic_path(trials_csv) as tmp:
        frame.to_csv(tmp, index=False)
    figures = output_dir / "figures"
    figures.mkdir(exist_ok=True)
    sections = [_figure(study, "history", figures / "optimisation_history.png"),
                _figure(study, "importances", figures / "param_importances.png")]  # fmt: skip
    metric = study.user_attrs.get("metric", "accuracy")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Search {html.escape(study.study_name)}</title>
<style>{STYLE}</style></head><body>
<h1>Search: {html.escape(study.study_name)}</h1>
<p>Written {now_utc()}. Objective: validation {html.escape(metric)} (maximised); the test split is scored for the
best trial only. {_counts(study)}</p>
{_best(best, metric)}
{_hand_set(hand_set, metric)}
{"".join(sections)}
<h2>Trials</h2>
{_trials_table(study, metric)}
</body></html>"""
    report = output_dir / "tune-report.html"
    write_text_atomic(report, page)
    return [trials_csv, report]


def _counts(study: Any) -> str:
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    return "Trials: " + ", ".join(f"{count} {state}" for state, count in sorted(states.items())) + "."


def _hand_set(hand_set: dict[str, Any] | None, metric: str) -> str:
    if hand_set is None:
        return ""
    return f"<p>{html.escape(hand_set_label(hand_set))}: validation {html.escape(metric)} {hand_set['value']:.4f}.</p>"


def hand_set_label(hand_set: dict[str, Any]) -> str:
    """What trial 0 was: the config as written, or partly so where a written value lay outside the space."""
    sampled = hand_set.get("sampled") or []
    kept = "the values as written" + (f"; sampled: {', '.join(sampled)}, outside the space" if sampled else "")
    return f"The hand-set config ({kept}, trial {hand_set['number']})"


def _best(best: dict[str, Any] | None, metric: str) -> str:
    if best is None:
        return "<p>No trial has completed yet.</p>"
    params = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(repr(v))}</td></tr>"
                     for k, v in best["params"].items())  # fmt: skip
    test = best.get("test")
    also = (
        f", test {metric} {test[metric]:.4f}"
        if test and metric != "accuracy" and test.get(metric) is not None
        else ""
    )
    scored = (f"test accuracy {test['accuracy']:.4f}{also} on {test['examples']:,} reviews (scored once, for this trial)"
              if test else "test split not scored yet (the search was stopped)")  # fmt: skip
    return (f"<h2>Best trial: {best['number']}</h2><p>validation {html.escape(metric)} {best['value']:.4f}; "
            f"{scored}. Config: <code>{html.escape(best['config'])}</code> "
            f"(<code>imdb-sentiment train {html.escape(best['config'])}</code> runs it).</p>"
            f"<table><tbody>{params}</tbody></table>")  # fmt: skip


def _trials_table(study: Any, metric: str) -> str:
    trials = study.get_trials(deepcopy=False)
    names = sorted({name for trial in trials for name in trial.params})
    head = "".join(f"<th>{html.escape(name)}</th>" for name in ["trial", "state", f"valid {metric}", *names])
    rows = []
    for trial in trials:
        value = f"{trial.value:.4f}" if trial.value is not None else ""
        cells = [str(trial.number), trial.state.name.lower(), value]
        cells += [_short(trial.params[name]) if name in trial.params else "" for name in names]
        rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _figure(study: Any, kind: str, path: Path) -> str:
    """Optuna's matplotlib plot (experimental API: its warning silenced); none while it cannot be drawn
    (importances need two completed trials that differ)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    caption = {"history": "Optimisation history: validation score of each trial and the best so far",
               "importances": "Parameter importances (fANOVA): share of the validation score's variance"}[kind]  # fmt: skip
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "history":
                axes = optuna_plots.plot_optimization_history(study)
            else:
                axes = optuna_plots.plot_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        logger.info("tune report: no %s figure yet (%s)", kind, exc)
        return ""
    figure = axes.figure
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return _image(path, caption)
