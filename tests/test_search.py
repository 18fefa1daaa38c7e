"""Hyperparameter search: Optuna's sweeper runs its trials through our launcher."""

import json
import re
from pathlib import Path

import pytest
from conftest import Sweep, sweep_once
from hydra.core.utils import JobReturn
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hydra_plugins.significance_launcher.sweep_record import SweepJob, begin_batch, job_return
from significance.errors import ConfigurationError
from significance.files import write_json
from significance.search import search_of

optuna = pytest.importorskip("optuna")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

SEARCH = ("hparams_search=example", "task=coins/material", "hydra.sweeper.n_trials=3")
# What the launcher logs as it hands a job's objective back to the sweeper.
HANDED = re.compile(r"#(\d+): best_val_acc = (\S+), handed to the sweeper")


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path) -> Sweep:
    """Three tiny trials in two batches (two, then one), each a job of our launcher."""
    return sweep_once(tmp_path_factory, "search", demo_dir, *SEARCH, "hydra.sweeper.n_jobs=2")


def best_val_acc(row: dict[str, str]) -> float:
    return json.loads((Path(row["job_dir"]) / "result.json").read_text())["best_val_acc"]


def test_each_trial_hands_optuna_its_best_val_acc(search: Sweep):
    rows = search.rows()
    handed = {int(job): float(value) for job, value in HANDED.findall(search.output)}
    assert handed == {int(row["job"]): best_val_acc(row) for row in rows}
    assert len(handed) == 3
    chosen = OmegaConf.load(search.path / "optimization_results.yaml")  # Optuna's own verdict
    best = max(sorted(handed), key=lambda job: handed[job])  # the first of equals, as Optuna
    assert chosen.best_value == handed[best]
    sampled = [f"{name}={value}" for name, value in chosen.best_params.items()]
    assert set(sampled) <= set(rows[best]["overrides"].split())


def test_summary_gathers_every_batch_of_the_search(search: Sweep):
    assert search.output.count("Launching 2 jobs") == 1
    assert search.output.count("Launching 1 jobs") == 1
    rows = search.rows()
    assert [(row["job"], row["status"]) for row in rows] == [("0", "ok"), ("1", "ok"), ("2", "ok")]
    assert len({row["job_dir"] for row in rows}) == 3
    searched = json.loads((search.path / "search.json").read_text())
    assert searched == {
        "objective": "best_val_acc",
        "direction": "maximize",
        "parameters": [
            "optimizer.lr",
            "optimizer.weight_decay",
            "model.head",
            "loss.class_weights",
        ],
    }


def test_results_name_the_best_trial_and_test_it_once(search: Sweep):
    rows = search.rows()
    values = [best_val_acc(row) for row in rows]
    best = values.index(max(values))
    results = (search.path / "results.md").read_text()
    searched = json.loads((search.path / "search.json").read_text())["parameters"]
    sampled = " ".join(
        item for item in rows[best]["overrides"].split() if item.split("=")[0] in searched
    )
    assert f"## Best trial: job {best} (`{sampled}`)" in results
    assert results.count("| task | seeds | accuracy |") == 1  # one trial's test figures
    assert f"| {float(rows[best]['test_acc']):.3f} (1 seed) |" in results
    figures = (search.path / "results.csv").read_text().splitlines()[1:]
    assert figures and all(f",{sampled}," in line for line in figures)


class FakeLauncher:
    """Hands back what our launcher would for each trial: the objective, or a failure."""

    def __init__(self, sweep_dir: Path, failing: set[int]) -> None:
        self.sweep_dir, self.failing, self.batches = sweep_dir, failing, []

    def launch(self, job_overrides: list, initial_job_idx: int) -> list[JobReturn]:
        self.batches.append(initial_job_idx)
        returns = []
        for index, overrides in enumerate(job_overrides, start=initial_job_idx):
            job = SweepJob(index, list(overrides), self.sweep_dir / str(index), None)
            job.job_dir.mkdir()
            status = "failed" if index in self.failing else "ok"
            write_json(job.job_dir / "result.json", {"status": status, "best_val_acc": index / 10})
            row = {"status": status, "task": "coins/material", "exit_code": 1}
            returns.append(job_return(job, row, self.sweep_dir, "best_val_acc"))
        return returns


def test_a_failed_trial_is_an_optuna_fail_and_the_search_goes_on(compose_train, tmp_path: Path):
    cfg = compose_train(*SEARCH[:2], "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={tmp_path}")
    sweeper = instantiate(cfg.hydra.sweeper).sweeper  # the example's settings, as Hydra makes it
    sweeper.storage = optuna.storages.InMemoryStorage()
    sweeper.config, sweeper.hydra_context = cfg, object()
    sweeper.launcher = FakeLauncher(tmp_path, failing={1})
    sweeper.sweep([])
    assert sweeper.launcher.batches == [0, 1, 2, 3]  # every trial ran after the failure
    (study,) = sweeper.storage.get_all_study_summaries()
    trials = optuna.load_study(study_name=study.study_name, storage=sweeper.storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
    assert [t.value for t in trials] == [0.0, None, 0.2, 0.3]
    assert OmegaConf.load(tmp_path / "optimization_results.yaml").best_value == 0.3


def test_a_search_refuses_a_test_objective_the_wrong_direction_and_a_used_folder(
    compose_train, tmp_path: Path
):
    assert search_of(compose_train()) is None  # a plain sweep
    with pytest.raises(ConfigurationError, match="not a validation figure"):
        search_of(compose_train(SEARCH[0], "objective=test_acc"))
    with pytest.raises(ConfigurationError, match="direction=maximize"):
        search_of(compose_train(SEARCH[0], "hydra.sweeper.direction=minimize"))
    (tmp_path / "summary.csv").write_text("job\n0\n")
    with pytest.raises(ConfigurationError, match="new sweep folder"):
        begin_batch(compose_train(SEARCH[0]), tmp_path, 0)
