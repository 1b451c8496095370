"""The quick start: from a fresh install to a trained model, its ground truth and a study.

:func:`run_quickstart` renders the small Two4Two dataset, trains the small
model (CUDA if present, else the CPU), measures which attributes the model
really uses (interventions), and exports the user study. Every step reuses what
an earlier call left in the output folder: a complete dataset is not rendered
again, a finished run is not trained again (an unfinished one is resumed), and
the ground truth and the study are only rebuilt when the checkpoint is newer.

Layout of the output folder::

    data/two4two_small/         the rendered dataset (train / validation / test + interventions)
    models/<run>/               the run (checkpoint, configs, images/, analysis/, ground_truth/)
    user_study/                 the exported study (index.html, study.qsf, images, manifest)
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dubfiv.config import ExperimentConfig, load_experiment
from dubfiv.errors import DubfivError

if TYPE_CHECKING:
    from dubfiv.study.build.export_config import ExportConfig

__all__ = ["QuickstartConfig", "QuickstartError", "QuickstartResult", "run_quickstart"]

REPO_CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


class QuickstartError(DubfivError, RuntimeError):
    """The quick start cannot run (missing configs, a conflicting output folder)."""


@dataclasses.dataclass
class QuickstartConfig:
    """Settings of :func:`run_quickstart` (the CLI's flags).

    Attributes:
        output: folder for the dataset, the run and the study.
        dataset_config: the dataset TOML (default ``config/dataset_small.toml``).
        model_config: the experiment TOML (default ``config/small_model.toml``).
        device: ``cpu``, ``cuda`` or ``None`` (CUDA when available).
        train_samples: training budget in samples (``None``: the config's).
        image_base_url: where the study's images will be hosted.
        seed: seed of the explanations and the study's draws.
        study_rows: rows of the study's explanation grids.
        progress: progress bars and step messages.
    """

    output: Path = Path("quickstart")
    dataset_config: Path = REPO_CONFIG_DIR / "dataset_small.toml"
    model_config: Path = REPO_CONFIG_DIR / "small_model.toml"
    device: str | None = None
    train_samples: int | None = None
    image_base_url: str | None = None
    seed: int = 0
    study_rows: int = 6
    progress: bool = True


@dataclasses.dataclass
class QuickstartResult:
    """Where everything is, and what each step did (``"reused"``, ``"rendered"``, ...)."""

    dataset_dir: Path
    run_dir: Path
    ground_truth: Path
    study_dir: Path
    steps: dict[str, str]
    seconds: dict[str, float]


def _experiment(config: QuickstartConfig, dataset: Path) -> ExperimentConfig:
    experiment = load_experiment(config.model_config)
    train = dataclasses.replace(
        experiment.train, dataset=dataset.name, dataset_dir=str(dataset.parent.resolve())
    )
    if config.train_samples is not None:
        train = dataclasses.replace(train, n_train_samples=config.train_samples)
    return dataclasses.replace(experiment, train=train)


def _render(config: QuickstartConfig, log: Callable[[str], None]) -> tuple[Path, str]:
    from two4two.dataset import iter_dataset_dirs, render_dataset_config, split_is_complete
    from two4two.dataset_config import load_dataset_configs

    configs = load_dataset_configs(config.dataset_config)
    if len(configs) != 1:
        raise QuickstartError(
            f"{config.dataset_config}: the quick start needs exactly one [[dataset]], "
            f"found {len(configs)}"
        )
    name = Path(configs[0].output_dir).name
    dataset = (config.output / "data" / name).absolute()
    dataset_config = dataclasses.replace(configs[0], output_dir=str(dataset))
    directories = list(iter_dataset_dirs([dataset_config]))
    if all(split_is_complete(d) for d in directories):
        log(f"dataset: reusing {dataset}")
        return dataset, "reused"
    log(f"dataset: rendering {dataset} (resumable: rerun to continue after an interruption)")
    render_dataset_config(dataset_config, progress=config.progress)
    return dataset, "rendered"


def _existing_run(models: Path, experiment: ExperimentConfig) -> tuple[Path, int] | None:
    """The newest run in ``models`` trained with ``experiment`` and its samples seen (0 for
    a run killed before its first checkpoint: resuming it starts it over in its folder)."""
    from dubfiv.checkpoint import CheckpointError, load_checkpoint
    from dubfiv.config import ConfigError
    from dubfiv.rundir import RunPaths

    if not models.is_dir():
        return None
    for run in sorted((p for p in models.iterdir() if p.is_dir()), reverse=True):
        paths = RunPaths(run)
        try:
            if load_experiment(paths.experiment) != experiment:
                continue
            if not paths.checkpoint.exists():
                return run, 0
            state = load_checkpoint(paths.checkpoint)
        except (ConfigError, CheckpointError, OSError):
            continue
        return run, int(state.get("samples_seen", 0))
    return None


def _train(config: QuickstartConfig, dataset: Path, log: Callable[[str], None]) -> tuple[Path, str]:
    from dubfiv.train import resume, train

    experiment = _experiment(config, dataset)
    models = (config.output / "models").absolute()
    found = _existing_run(models, experiment)
    if found is not None:
        run_dir, seen = found
        budget = experiment.train.n_train_samples // experiment.train.batch_size
        if seen >= budget * experiment.train.batch_size:
            log(f"model: reusing the finished run {run_dir}")
            return run_dir, "reused"
        log(f"model: resuming {run_dir} at {seen} of {experiment.train.n_train_samples} samples")
        resume(run_dir, device=config.device, progress=config.progress)
        return run_dir, "resumed"
    log(f"model: training {config.model_config.name} "
        f"({experiment.train.n_train_samples} samples) into {models}")
    run_dir = train(experiment, models, device=config.device, progress=config.progress,
                    config_files=[config.model_config])
    return run_dir, "trained"


def _newer(path: Path, *than: Path) -> bool:
    return path.exists() and all(path.stat().st_mtime >= t.stat().st_mtime for t in than)


def _ground_truth(config: QuickstartConfig, run_dir: Path, dataset: Path,
                  log: Callable[[str], None]) -> tuple[Path, str]:
    from dubfiv.ground_truth import evaluate_run, write_report
    from dubfiv.rundir import RunPaths
    from dubfiv.runs import find_checkpoint

    out = RunPaths(run_dir).ground_truth_report
    if _newer(out, find_checkpoint(run_dir)):
        log(f"ground truth: reusing {out}")
        return out, "reused"
    log("ground truth: which attributes does the model use? (intervention test images)")
    report = evaluate_run(run_dir, dataset_dir=dataset.parent, dataset=dataset.name,
                          device=config.device, seed=config.seed, progress=config.progress)
    json_path, _ = write_report(report, out.parent)
    return json_path, "computed"


def _export(config: QuickstartConfig, run_dir: Path, dataset: Path, ground_truth: Path,
            log: Callable[[str], None]) -> tuple[Path, str]:
    from dubfiv.runs import find_checkpoint
    from dubfiv.study.build.export import export_user_study
    from dubfiv.study.build.export_config import ExportConfig

    study = (config.output / "user_study").absolute()
    export = ExportConfig(run_dir=run_dir, output=study, seed=config.seed,
                          dataset_dir=dataset.parent, device=config.device,
                          rows=config.study_rows, progress=config.progress)
    if config.image_base_url is not None:
        export = dataclasses.replace(export, image_base_url=config.image_base_url)
    if _newer(study / "manifest.json", find_checkpoint(run_dir), ground_truth) \
            and _same_export_settings(study, export):
        log(f"user study: reusing {study}")
        return study, "reused"
    log(f"user study: exporting into {study}")
    export_user_study(export, log=log if config.progress else None)
    return study, "exported"


# settings of an export that do not change what it contains
_EXPORT_SETTINGS_IGNORED = frozenset({"run_dir", "output", "dataset_dir", "device", "batch_size",
                                      "cache", "progress"})


def _same_export_settings(study: Path, export: ExportConfig) -> bool:
    """Whether the study in ``study`` was exported with ``export``'s settings (seed, image
    base URL, rows, ...), as recorded in its ``export.json``."""
    from dubfiv.study.build.export import EXPORT_JSON

    try:
        stored = json.loads((study / EXPORT_JSON).read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    wanted = {k: (str(v) if isinstance(v, Path) else v)
              for k, v in dataclasses.asdict(export).items()}
    wanted = json.loads(json.dumps(wanted, default=str))  # tuples -> lists, as stored
    return all(stored.get(k) == v for k, v in wanted.items()
               if k not in _EXPORT_SETTINGS_IGNORED)


def run_quickstart(config: QuickstartConfig,
                   log: Callable[[str], None] = print) -> QuickstartResult:
    """Render, train, evaluate and export (see the module docstring); reuse what exists.

    Raises:
        QuickstartError: a config file is missing or does not fit.
    """
    for path, what in ((config.dataset_config, "dataset"), (config.model_config, "model")):
        if not Path(path).is_file():
            raise QuickstartError(
                f"{path}: {what} config not found; run from a clone of the repository "
                f"(pip install -e .) or pass --{what}_config"
            )
    steps: dict[str, str] = {}
    seconds: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], tuple[Path, str]]) -> Path:
        start = time.perf_counter()
        path, steps[name] = fn()
        seconds[name] = time.perf_counter() - start
        return path

    dataset = timed("dataset", lambda: _render(config, log))
    run_dir = timed("model", lambda: _train(config, dataset, log))
    ground_truth = timed("ground_truth", lambda: _ground_truth(config, run_dir, dataset, log))
    study = timed("user_study", lambda: _export(config, run_dir, dataset, ground_truth, log))
    return QuickstartResult(dataset_dir=dataset, run_dir=run_dir, ground_truth=ground_truth,
                            study_dir=study, steps=steps, seconds=seconds)
