"""The README's configuration reference is generated from the config dataclasses and current."""

import dataclasses
from pathlib import Path

from dubfiv import config as cfg
from dubfiv.config_docs import BEGIN, END, field_help, render_reference, replace_reference
from two4two.dataset_config import DatasetConfig, SplitConfig

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert replace_reference(text) == text, "run: python scripts/config_reference.py"


def _all_fields(cls: type) -> list[dataclasses.Field]:
    return list(dataclasses.fields(cls))


def test_every_key_has_help_and_appears() -> None:
    reference = render_reference()
    classes = [cfg.ExperimentConfig, cfg.ModelConfig, cfg.FadeOutAndPool, cfg.FlowBlocks,
               cfg.TrainConfig, cfg.ClassifierConfig, cfg.OptimizerConfig, cfg.ScheduleConfig,
               DatasetConfig, SplitConfig]
    for cls in classes:
        assert f"({cls.__name__})" in reference
        for field in _all_fields(cls):
            meaning = field_help(cls, field)
            assert meaning, f"{cls.__name__}.{field.name} has no help text"
            assert f"| `{field.name}` |" in reference and meaning in reference


def test_reference_markers_wrap_the_block() -> None:
    reference = render_reference()
    assert reference.startswith(BEGIN) and reference.endswith(END)
