"""The paper's released model as one record (``docs/released_model.md``).

Like torchvision's weight entries: what the loader, the summaries, the tests and
``download_artifacts.sh`` need to know about the released run, in one frozen
value, so that no module guesses it on its own. Importing this module imports
nothing else.
"""

from __future__ import annotations

import dataclasses

__all__ = ["RELEASED_MODEL", "ReleasedModel"]


@dataclasses.dataclass(frozen=True)
class ReleasedModel:
    """Facts about a released run.

    Attributes:
        name: the run folder the archive unpacks to.
        url: where the archive (``.tar.gz``) is downloaded from.
        archive_bytes: the archive's size, about (the host publishes no checksum).
        input_shape: per-image input ``(C, H, W)``.
        n_layers: flow layers (indices ``0 .. n_layers - 1``; ``docs/flow.md``).
        head_after_layer: the layer whose output the linear head reads.
        head_in_features: that output's ``C * H * W`` (``fc.weight`` is ``[1, width]``).
        head_label: the attribute the head predicts.
        checkpoint_keys: the entries of ``models/models.torch``.
        extra_toml_keys: top-level keys of the released ``experiment.toml`` that our
            config does not have; they are accepted (with a warning naming them) and
            ignored, any other unknown key is still an error.
    """

    name: str
    url: str
    archive_bytes: int
    input_shape: tuple[int, int, int]
    n_layers: int
    head_after_layer: int
    head_in_features: int
    head_label: str = "obj_name"
    checkpoint_keys: tuple[str, ...] = ("model_state", "classifiers", "optimizer", "history",
                                        "image_sampler", "experiment", "output_dir")
    extra_toml_keys: tuple[str, ...] = ("output_dir",)

    @property
    def image_size(self) -> int:
        """Input height (= width) in pixels."""
        return self.input_shape[1]

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    @property
    def archive(self) -> str:
        """The archive's file name (the last part of :attr:`url`)."""
        return self.url.rsplit("/", 1)[-1]


RELEASED_MODEL = ReleasedModel(
    name="do_users_benefit_from_interpretable_vision_model",
    url="https://f002.backblazeb2.com/file/iclr2022/"
        "do_users_benefit_from_interpretable_vision_model.tar.gz",
    archive_bytes=2_700_000_000,
    input_shape=(3, 128, 128),
    n_layers=687,
    head_after_layer=641,
    head_in_features=768,
)
"""The model of "Do Users Benefit From Interpretable Vision?" (ICLR 2022): the
architecture of ``config/model.toml`` (7 stages; the head reads the 768x1x1 output of
layer 641)."""
