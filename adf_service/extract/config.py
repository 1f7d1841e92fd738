"""extract.yaml: which backbone, checkpoint and input each modality stream uses (docs/design.md §6).

    frames: 64                   # segments sampled per clip (thesis §5.1.3)
    size: 112                    # frames resized to size×size
    dtype: float16               # storage dtype of the feature store
    rgb:  {arch: r2plus1d_50, checkpoint: ckpt/r2p1d50_K_200ep.pth}
    flow: {arch: resnext3d_101, checkpoint: ckpt/Flow_Kinetics_16f.pth, normalization: mars_flow,
           method: tvl1, bound: 20}
    pose: {arch: resnet3d_18, checkpoint: ckpt/r3d18_K_200ep.pth, extractor: precomputed,
           options: {root: pose/}}

Any non-empty subset of ``rgb``, ``flow``, ``pose`` may be given; a stream's ``arch``,
``in_channels`` and ``normalization`` default to the thesis' (``THESIS_BACKBONES``).
Relative paths (checkpoints, and pose options the extractor declares as a ``Path``) resolve
against the directory of the yaml file. The file is read like grid.yaml
(:mod:`adf_service.yamldoc`: a key given twice, an alias or deep nesting is an error) and every
problem is reported with its line and key, with a suggestion for a misspelt key:
``extract.yaml line 7: flow.arch: 'resnet50' not in {resnet3d_18, resnext3d_101, r2plus1d_50}``.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from adf_service.extract.backbones.normalize import THESIS_BACKBONES
from adf_service.extract.flow import FlowConfig
from adf_service.extract.pose import POSE_EXTRACTORS, PoseExtractor, create_pose_extractor
from adf_service.extract.sampling import N_SEGMENTS
from adf_service.modalities import MODALITIES
from adf_service.yamldoc import DocumentError, DocumentProblem, Loc, compose, explain

__all__ = [
    "BackboneSpec",
    "ExtractConfig",
    "ExtractConfigError",
    "FlowSpec",
    "PoseSpec",
    "RgbSpec",
    "load_extract_config",
    "parse_extract_config",
]

Arch = Literal["resnet3d_18", "resnext3d_101", "r2plus1d_50"]
Normalization = Literal["kinetics", "hara2018", "mars_flow"]


class ExtractConfigError(DocumentError):
    """An extract.yaml that does not describe a valid extraction; one line per problem.

    ``problems`` are :class:`~adf_service.yamldoc.DocumentProblem` (path, message, line).
    """


class BackboneSpec(BaseModel):
    """One modality stream: its frozen backbone, checkpoint and input scaling."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input_channels: ClassVar[int] = 3  # channels of the modality's input: fixed by the modality

    arch: Arch
    checkpoint: Path | None = None  # a .pth; null only with random_init: true
    random_init: bool = False  # no checkpoint: random weights, for tests and smoke runs only
    in_channels: int
    normalization: Normalization
    adapt_input_channels: bool = False  # a checkpoint with other input channels: TSN's averaging

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint_exists(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        path = _resolve(value, info)
        if not path.is_file():
            raise ValueError(f"checkpoint file {path} does not exist")
        return path

    @model_validator(mode="after")
    def _weights_and_channels(self) -> BackboneSpec:
        if self.checkpoint is None and not self.random_init:
            raise ValueError("needs a checkpoint (a .pth file); `checkpoint: null` is allowed only with "
                             "`random_init: true`, for tests and smoke runs")
        if self.checkpoint is not None and self.random_init:
            raise ValueError(f"gives both checkpoint {self.checkpoint} and random_init: true; choose one")
        if self.in_channels != self.input_channels:
            raise ValueError(
                f"in_channels {self.in_channels}, but this modality's input has {self.input_channels} "
                "channels; for a checkpoint trained on other inputs set adapt_input_channels: true")
        return self


_RGB, _FLOW, _POSE = (THESIS_BACKBONES[m] for m in MODALITIES)


class RgbSpec(BackboneSpec):
    """RGB frames in [0, 1]; defaults: R(2+1)D-50, Kinetics scaling (thesis §4.1.2)."""

    arch: Arch = _RGB.arch  # type: ignore[assignment]
    in_channels: int = _RGB.in_channels
    normalization: Normalization = _RGB.normalization  # type: ignore[assignment]


class FlowSpec(BackboneSpec):
    """Optical flow (x, y) in [-1, 1]; defaults: MARS' ResNeXt-101, TV-L1, ±20 px (thesis §4.1.2)."""

    input_channels: ClassVar[int] = 2

    arch: Arch = _FLOW.arch  # type: ignore[assignment]
    in_channels: int = _FLOW.in_channels
    normalization: Normalization = _FLOW.normalization  # type: ignore[assignment]
    method: Literal["auto", "tvl1", "farneback"] = "auto"  # auto: TV-L1 where OpenCV has it
    bound: float = Field(20.0, gt=0)  # pixels; flow clipped to ±bound and divided by it

    def flow_config(self) -> FlowConfig:
        return FlowConfig(method=self.method, bound=self.bound)


class PoseSpec(BackboneSpec):
    """Body-part renderings in [0, 1] from a pose extractor (docs/pose.md); default 3D ResNet-18."""

    arch: Arch = _POSE.arch  # type: ignore[assignment]
    in_channels: int = _POSE.in_channels
    normalization: Normalization = _POSE.normalization  # type: ignore[assignment]
    extractor: str  # a registered pose extractor: precomputed, zeros, or your own
    options: dict[str, Any] = Field(default_factory=dict)  # keyword arguments of the extractor

    @model_validator(mode="before")
    @classmethod
    def _resolve_path_options(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("options"), dict):
            return data
        constructor = POSE_EXTRACTORS.get(data.get("extractor"))
        if constructor is None:
            return data
        paths = _path_parameters(constructor)
        options = {k: _resolve(Path(v), info) if k in paths and isinstance(v, str) else v
                   for k, v in data["options"].items()}
        return {**data, "options": options}

    @field_validator("extractor")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in POSE_EXTRACTORS:
            raise ValueError(f"{name!r} not in {{{', '.join(sorted(POSE_EXTRACTORS))}}}")
        return name

    @model_validator(mode="after")
    def _options_fit(self) -> PoseSpec:
        self.create_extractor()  # PoseError names the options the extractor takes
        return self

    def create_extractor(self) -> PoseExtractor:
        """A fresh pose extractor built from ``extractor`` and ``options``."""
        return create_pose_extractor(self.extractor, **self.options)


class ExtractConfig(BaseModel):
    """The whole extract.yaml: streams (at least one), sampling and storage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rgb: RgbSpec | None = None
    flow: FlowSpec | None = None
    pose: PoseSpec | None = None
    frames: int = Field(N_SEGMENTS, ge=1)  # thesis §5.1.3: 64 segments, one frame each
    size: int = Field(112, ge=1)  # thesis §5.1.3: frames resized to 112×112
    dtype: Literal["float16", "float32"] = "float16"  # the store's dtype

    @model_validator(mode="after")
    def _some_stream(self) -> ExtractConfig:
        if not self.streams():
            raise ValueError(f"gives no modality; give at least one of {', '.join(MODALITIES)}")
        return self

    def streams(self) -> dict[str, BackboneSpec]:
        """The configured streams in the thesis' order: ``{"rgb": RgbSpec, "flow": FlowSpec, ...}``."""
        return {m: spec for m in MODALITIES if (spec := getattr(self, m)) is not None}


def load_extract_config(path: Path | str) -> ExtractConfig:
    """Read and validate an extract.yaml; relative paths resolve against its directory.

    Raises `ExtractConfigError` with one ``<file> line N: <key>: <problem>`` line per problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExtractConfigError(str(path), [DocumentProblem("", f"cannot read the extraction config ({exc})")]) \
            from exc
    data, lines = compose(text, str(path), error=ExtractConfigError)
    return parse_extract_config(data, source=str(path), base_dir=path.parent, lines=lines)


def parse_extract_config(data: Any, *, source: str = "extract.yaml", base_dir: Path | str = ".",
                         lines: dict[Loc, int] | None = None) -> ExtractConfig:
    """Validate ``data`` (the parsed yaml); ``lines`` maps key paths to their line for messages."""
    lines = lines or {}
    if not isinstance(data, dict):
        message = f"expected a mapping of keys (rgb, flow, pose, frames, ...), got {type(data).__name__}"
        raise ExtractConfigError(source, [DocumentProblem("", message, lines.get(()))])
    try:
        return ExtractConfig.model_validate(data, context={"base_dir": Path(base_dir)})
    except ValidationError as exc:
        raise ExtractConfigError(source, explain(exc, ExtractConfig, lines)) from None


def _resolve(path: Path, info: ValidationInfo) -> Path:
    """``path`` (``~`` expanded) against the yaml file's directory, passed as validation context."""
    path = path.expanduser()
    return path if path.is_absolute() else ((info.context or {}).get("base_dir", Path(".")) / path).resolve()


def _path_parameters(constructor: Any) -> set[str]:
    """Names of the constructor's parameters annotated with ``Path`` (alone or in a union)."""
    try:
        hints = typing.get_type_hints(constructor.__init__ if inspect.isclass(constructor) else constructor)
    except (NameError, TypeError):
        return set()
    return {name for name, hint in hints.items() if hint is Path or Path in typing.get_args(hint)}
