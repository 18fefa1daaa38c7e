from pathlib import Path

import pytest
import yaml
from conftest import CONF_DIR, TASK_IDS

from significance.data.demo import FIELDS
from significance.tasks import Task, discover_tasks, slugify


def test_the_nine_tasks_are_discovered_from_their_files():
    assert TASK_IDS == [
        "artefact",
        "coins/material",
        "coins/period",
        "frescoes/location",
        "frescoes/period",
        "icons/location",
        "manuscripts/description",
        "manuscripts/language",
        "manuscripts/location",
    ]


def test_every_stage2_type_is_a_stage1_class_and_every_field_is_in_the_demo():
    tasks = discover_tasks(CONF_DIR)
    types = set(tasks["artefact"].classes)
    for task in tasks.values():
        if task.stage == 2:
            assert task.artwork_type in types
            assert task.field in FIELDS


def test_adding_a_field_is_adding_one_yaml_file(tmp_path: Path):
    (tmp_path / "task" / "coins").mkdir(parents=True)
    spec = {
        "id": "coins/mint",
        "stage": 2,
        "artwork_type": "coins",
        "field": "mint",
        "classes": ["rome", "constantinople"],
    }
    (tmp_path / "task" / "coins" / "mint.yaml").write_text(yaml.safe_dump(spec))
    assert list(discover_tasks(tmp_path)) == ["coins/mint"]


def test_a_task_file_whose_id_disagrees_with_its_path_is_refused(tmp_path: Path):
    (tmp_path / "task").mkdir()
    spec = {"id": "coins/mint", "stage": 1, "field": "x", "classes": ["a", "b"]}
    (tmp_path / "task" / "mint.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="does not match its file"):
        discover_tasks(tmp_path)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"stage": 3}, "stage must be 1 or 2"),
        ({"artwork_type": None}, "needs an artwork_type"),
        ({"classes": ["a"]}, "at least two classes"),
        ({"classes": ["a", "a"]}, "repeat"),
    ],
)
def test_invalid_task_descriptions_are_refused(spec: dict, message: str):
    base = {"id": "t", "stage": 2, "artwork_type": "coins", "field": "f", "classes": ["a", "b"]}
    with pytest.raises(ValueError, match=message):
        Task.from_config({**base, **spec})


def test_slug_is_safe_for_paths_and_wandb_names():
    assert slugify("coins/material") == "coins-material"
    assert slugify("manuscripts/text&figure") == "manuscripts-text-figure"


def test_the_data_folder_moves_with_significance_data_dir(compose_train, monkeypatch, tmp_path):
    monkeypatch.setenv("SIGNIFICANCE_DATA_DIR", str(tmp_path / "scratch"))
    cfg = compose_train(fast=False)
    assert cfg.data.cache_dir == str(tmp_path / "scratch" / "cache")
    assert cfg.data.facts_file == str(tmp_path / "scratch" / "cache" / "image_facts.sqlite")
    assert cfg.data.demo_dir == str(tmp_path / "scratch" / "demo")
    monkeypatch.delenv("SIGNIFICANCE_DATA_DIR")
    assert compose_train(fast=False).data.cache_dir.endswith("/data/cache")


def test_the_study_scale_experiment_sweeps_every_task_on_a_study_sized_collection(
    compose_train,
):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from significance.data.demo import DEMO_SCALES, demo_spec

    cfg = compose_train("experiment=study_scale", fast=False)
    HydraConfig.instance().set_config(cfg)
    assert cfg.data.demo_scale == "study" and cfg.data.demo_dir.endswith("/study")
    assert OmegaConf.select(cfg, "hydra.sweeper.params.task").split(",") == TASK_IDS
    study = DEMO_SCALES["study"]
    # The study's README: images per artwork type in the study.
    assert (study.coins, study.frescoes, study.icons, study.manuscripts) == (2514, 718, 1678, 366)
    with pytest.raises(ValueError, match=r"data\.demo_scale must be one of"):
        demo_spec("huge")


def test_a_run_draws_its_split_over_every_configured_task(compose_train):
    from significance.config import configured_tasks

    assert {task.id for task in configured_tasks(compose_train())} == set(TASK_IDS)
