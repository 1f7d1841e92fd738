"""Load a user-supplied Kinetics checkpoint (``.pth``) into a backbone, strictly (docs/design.md §6).

What the public checkpoints look like (3D-ResNets-PyTorch ``main.py``, MARS ``train.py``):
``{"epoch": int, "arch": str, "state_dict": {...}, "optimizer": {...}[, "scheduler": {...}]}``
with the keys of a ``DataParallel`` model (``module.conv1.weight`` …) and a classifier
``fc.weight``/``fc.bias`` for 400 or 700 classes; files written by PyTorch 0.3 (the 2018
ResNeXt-101) have no ``num_batches_tracked`` buffers. All of that is plain tensors, dicts,
lists, numbers and strings (plus ``collections.Counter`` in a MultiStepLR state), which
``torch.load(weights_only=True)`` reads without running pickled code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from adf_service.extract.backbones.trunk import BackboneError

__all__ = ["load_backbone_checkpoint"]

_LISTED = 10  # keys named per kind in an error; the rest are counted


def load_backbone_checkpoint(model: nn.Module, path: Path | str, *,
                             adapt_input_channels: bool = False) -> None:
    """Copy the weights in checkpoint ``path`` into ``model``; every key must match.

    Accepts ``{"state_dict": …}``, ``{"model": …}`` or a bare state dict; strips ``module.``
    prefixes and drops the classifier (``fc.*``). Anything else that differs — missing or
    unexpected keys, shapes — raises :class:`BackboneError` listing it, naming the file.

    ``adapt_input_channels``: if the file's first conv takes another number of input
    channels than ``model`` (an RGB checkpoint for the 2-channel flow model), average its
    weights over the input channels and repeat the average once per model input channel —
    the cross-modality initialisation of TSN (Wang et al. 2016, §3.2). Without it such a
    file is refused, saying how many input channels it has.
    """
    path = Path(path)
    checkpoint = _read(path)
    state = _state_dict_of(checkpoint, path)
    expected = model.state_dict()
    _fit_input_conv(state, expected, path, adapt_input_channels)
    for key in expected:
        # Absent from PyTorch < 0.4.1 files; unused in eval mode, so the model's own value stays.
        if key.endswith(".num_batches_tracked"):
            state.setdefault(key, expected[key])
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [(k, tuple(expected[k].shape), tuple(v.shape))
                  for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or mismatched:
        model_name = getattr(model, "arch", "") or type(model).__name__
        raise BackboneError(_mismatch_report(path, model_name, checkpoint, missing, unexpected, mismatched))
    model.load_state_dict(state)


def _read(path: Path) -> Any:
    if not path.is_file():
        raise BackboneError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" not in str(e):
            raise BackboneError(f"{path}: not a readable torch checkpoint (truncated, or not a .pth file): "
                                f"{type(e).__name__}: {_first_line(str(e))}") from e
        found = re.search(r"WeightsUnpickler error: (.*?)(?: was not an allowed global|\n|$)", str(e))
        raise BackboneError(
            f"{path}: holds pickled Python objects besides tensors and plain containers "
            f"({found.group(1) if found else 'unknown object'}); it is not unpickled, since that can run "
            "arbitrary code. If you trust the file, save its state dict alone once: "
            f"torch.save(torch.load({str(path)!r}, weights_only=False)['state_dict'], 'weights.pth')"
        ) from e
    except Exception as e:  # torch.load raises RuntimeError, EOFError, KeyError … on non-checkpoints
        raise BackboneError(f"{path}: not a readable torch checkpoint (truncated, or not a .pth file): "
                            f"{type(e).__name__}: {_first_line(str(e))}") from e


def _state_dict_of(checkpoint: Any, path: Path) -> dict[str, Tensor]:
    state = checkpoint
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                state = checkpoint[key]
                break
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        top = (sorted(map(str, checkpoint))[:_LISTED] if isinstance(checkpoint, Mapping)
               else type(checkpoint).__name__)
        raise BackboneError(f"{path}: no state dict of tensors found (looked for 'state_dict', 'model' "
                            f"or a bare state dict); top level: {top}")
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        key = str(key)
        while key.startswith("module."):  # DataParallel / DistributedDataParallel wrappers
            key = key[len("module."):]
        if not key.startswith("fc."):
            out[key] = value
    return out


def _fit_input_conv(state: dict[str, Tensor], expected: dict[str, Tensor], path: Path, adapt: bool) -> None:
    """Adapt (or refuse) the first conv when only its input channels differ."""
    key = next((k for k, v in expected.items() if v.dim() == 5), None)
    if key is None or key not in state:
        return
    want, have = expected[key].shape, state[key].shape
    if len(have) != 5 or have == want or have[:1] + have[2:] != want[:1] + want[2:]:
        return  # equal, or a difference the general report describes
    if not adapt:
        raise BackboneError(
            f"{path}: {key} takes {have[1]} input channels, the model {want[1]} (in_channels); pass "
            "adapt_input_channels=True to initialise it from the average over the file's input channels")
    state[key] = state[key].mean(dim=1, keepdim=True).repeat(1, want[1], 1, 1, 1)


def _mismatch_report(path: Path, model_name: str, checkpoint: Any, missing: list[str], unexpected: list[str],
                     mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]) -> str:
    arch = checkpoint.get("arch") if isinstance(checkpoint, Mapping) else None
    said = f" (the file says arch {arch!r})" if arch else ""
    lines = [f"{path}: checkpoint does not fit {model_name}{said}"]
    for kind, keys in (("missing", missing), ("unexpected", unexpected)):
        if keys:
            more = f" … (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else ""
            lines.append(f"  {len(keys)} {kind} keys: {', '.join(keys[:_LISTED])}{more}")
    if mismatched:
        lines.append(f"  {len(mismatched)} shape mismatches:")
        lines += [f"    {k}: model {list(want)}, file {list(have)}" for k, want, have in mismatched[:_LISTED]]
        if len(mismatched) > _LISTED:
            lines.append(f"    … (+{len(mismatched) - _LISTED} more)")
    return "\n".join(lines)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else "(no message)"
