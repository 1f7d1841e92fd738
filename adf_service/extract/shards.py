"""The partial directory of an unfinished extraction: one shard per finished clip.

``STORE.partial/`` holds ``fingerprint.json`` (what the features depend on, and its hash) and
``clips/<clip_id>.npz``: every view of one clip, per modality and layer, in the store's dtype.
A shard is written to a temporary file and renamed into place, so a shard that exists is
complete; an extraction that restarts skips the clips that have one. Once every clip is
done the store is assembled from the shards and the directory removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ClipFeatures", "ExtractError", "PartialDir", "partial_path"]

ClipFeatures = dict[str, dict[str, np.ndarray]]  # {modality: {layer: [C, T, H, W]}} of one view

_FINGERPRINT = "fingerprint.json"
_SHARD = ".npz"


class ExtractError(ValueError):
    """An extraction that cannot start or finish; the message names the path, clip or setting."""


def partial_path(store: Path) -> Path:
    """``STORE.partial``: the sibling directory that holds an unfinished extraction of ``store``."""
    return store.with_name(store.name + ".partial")


class PartialDir:
    """Shards of finished clips for one extraction, identified by its ``fingerprint``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clips = path / "clips"

    @classmethod
    def open(cls, store: Path, fingerprint: Mapping[str, Any]) -> PartialDir:
        """Create ``STORE.partial`` for ``fingerprint``, or reopen it if it was made with the same one.

        Raises `ExtractError` naming both hashes and every setting that differs when the
        directory was made by an extraction with another fingerprint.
        """
        partial = cls(partial_path(store))
        digest = fingerprint_hash(fingerprint)
        record = partial.path / _FINGERPRINT
        if record.is_file():
            earlier = json.loads(record.read_text(encoding="utf-8"))
            if earlier.get("hash") != digest:
                raise ExtractError(_mismatch(partial.path, earlier, fingerprint, digest))
        else:
            partial.clips.mkdir(parents=True, exist_ok=True)
            _write_atomically(record, json.dumps({"hash": digest, "fingerprint": fingerprint}, indent=1).encode())
        partial.clips.mkdir(exist_ok=True)
        return partial

    def done(self) -> set[str]:
        """Ids of the clips whose shard is written."""
        return {p.name[: -len(_SHARD)] for p in self.clips.glob(f"*{_SHARD}")}

    def shard(self, clip_id: str) -> Path:
        return self.clips / f"{clip_id}{_SHARD}"

    def write(self, clip_id: str, views: list[ClipFeatures], dtype: str) -> None:
        """Write the shard of ``clip_id`` (views in order), cast to ``dtype``, atomically.

        Raises `ExtractError` naming the clip, modality and layer if a value is not finite in ``dtype``.
        """
        arrays = {}
        for v, per_modality in enumerate(views):
            for modality, per_layer in per_modality.items():
                for layer, array in per_layer.items():
                    with np.errstate(over="ignore"):
                        stored = arrays[f"{v}/{modality}/{layer}"] = np.asarray(array, dtype=dtype)
                    if not np.isfinite(stored).all():
                        raise ExtractError(f"clip {clip_id!r} view {v}: {modality}.{layer} has values that are "
                                           f"NaN or beyond {dtype}'s range; check the backbone's checkpoint "
                                           "and normalization, or store float32")
        tmp = Path(f"{self.shard(clip_id)}.tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, self.shard(clip_id))

    def read(self, clip_id: str, view: int) -> ClipFeatures:
        """View ``view`` of a written shard: ``{modality: {layer: array}}``."""
        features: ClipFeatures = {}
        with np.load(self.shard(clip_id)) as shard:
            for key in shard.files:
                v, modality, layer = key.split("/")
                if int(v) == view:
                    features.setdefault(modality, {})[layer] = shard[key]
        return features

    def remove(self) -> None:
        shutil.rmtree(self.path)


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    """sha256 of the fingerprint's canonical JSON."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()


def _mismatch(path: Path, earlier: Mapping[str, Any], now: Mapping[str, Any], digest: str) -> str:
    before = earlier.get("fingerprint", {})
    keys = sorted(set(before) | set(now), key=str)
    changed = [f"  {k}: was {json.dumps(before.get(k))}, now {json.dumps(now.get(k))}"
               for k in keys if before.get(k) != now.get(k)]
    return "\n".join([
        f"{path} holds clips of another extraction (fingerprint {str(earlier.get('hash'))[:12]}); "
        f"this one has fingerprint {digest[:12]}. It differs in:", *changed,
        f"Run with the settings it was made with to resume, or delete {path} to start over.",
    ])


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
