"""The base model every stage trains on: which one, what exactly it is, and where the CPU base is built.

Pure: no Dagster; torch only when the CPU base is pretrained (`build_cpu_base` imports it then).

`CLARA_BASE_MODEL` names the base:
- unset or "clara-cpu": the project's own small Qwen3, its shipped reading skill continued on this corpus and
  fresh made-up reading text (clara_model.pretrain_base) into artifacts/base_model/, cached by its inputs;
- "tiny": the seeded random-init preset (fast unit tests; it cannot learn, see clara_model.pretrain_base);
- a hub id or a local folder: real weights, recorded (id, revision or folder, config, content hash), never trained.

The record (`BaseRecord`) is what the stages read: the name to pass as `model.base_model` and a digest that changes
whenever the weights do, so a new base marks every stage stale and trains in a fresh run folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..storage import BASE_MODEL_DIR, BASE_RECORD_FILE, write_json_atomic

CPU_BASE = "clara-cpu"  # the project's pretrained CPU base
TINY = "tiny"
BASE_DIR = BASE_MODEL_DIR  # under the artifacts root: the CPU base's HF folder (storage's layout)
RECORD_FILE = BASE_RECORD_FILE  # under the artifacts root: the current BaseRecord
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class BaseRecord:
    """What the stages train on."""

    requested: str  # the CLARA_BASE_MODEL value it was made for
    name_or_path: str  # what the trainer gets as model.base_model
    kind: str  # "cpu-pretrained", "tiny", "local" or "hub"
    digest: str  # changes whenever the weights do
    revision: str | None = None  # the hub snapshot's commit, when known
    config: dict | None = None  # the model's config.json

    def to_dict(self) -> dict:
        return asdict(self)


def read_record(artifacts_root: str | Path) -> BaseRecord | None:
    path = Path(artifacts_root) / RECORD_FILE
    if not path.exists():
        return None
    return BaseRecord(**json.loads(path.read_text(encoding="utf-8")))


def write_record(artifacts_root: str | Path, record: BaseRecord) -> Path:
    path = Path(artifacts_root) / RECORD_FILE
    write_json_atomic(path, record.to_dict())
    return path


def weights_digest(folder: Path) -> str:
    """sha256 over the folder's config and weight files (names and bytes), in name order."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and (p.suffix in WEIGHT_SUFFIXES
                                                                  or p.name == "config.json"))
    if not any(p.suffix in WEIGHT_SUFFIXES for p in files):
        raise FileNotFoundError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)}); is it a model folder?")
    for path in files:
        h.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def describe_base(requested: str) -> BaseRecord:
    """Record real weights or the tiny preset without training anything.

    Raises:
        FileNotFoundError: when a hub id is not in the local cache while offline, or a folder has no weights.
    """
    if requested == TINY:
        from clara_model.contract import TRAINER_VERSION  # the preset is defined by the trainer's code

        return BaseRecord(requested, TINY, "tiny", hashlib.sha256(f"tiny {TRAINER_VERSION}".encode()).hexdigest())
    folder = Path(requested).expanduser()
    if folder.is_dir():
        return BaseRecord(requested, str(folder.resolve()), "local", weights_digest(folder),
                          config=_config(folder))
    snapshot = _hub_snapshot(requested)
    return BaseRecord(requested, requested, "hub", weights_digest(snapshot), revision=snapshot.name,
                      config=_config(snapshot))


def build_cpu_base(artifacts_root: str | Path, chunks_file: Path | None, *, steps: int | None = None) -> tuple[BaseRecord, dict]:
    """Build (or reuse) the CPU base into artifacts/base_model/; return its record and the pretraining info."""
    from clara_model.pretrain_base import PretrainSettings, build_base_model, corpus_texts

    folder = Path(artifacts_root) / BASE_DIR
    settings = PretrainSettings() if steps is None else PretrainSettings(steps=steps)
    info = build_base_model(folder, corpus_texts(chunks_file), settings)
    record = BaseRecord(CPU_BASE, str(folder.resolve()), "cpu-pretrained", info["weights_sha256"],
                        config=_config(folder))
    return record, info


def _config(folder: Path) -> dict | None:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot folder of a hub model (downloaded unless HF_HUB_OFFLINE is set)."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
    try:
        return Path(snapshot_download(repo_id, local_files_only=offline,
                                      allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model"]))
    except Exception as error:  # huggingface_hub raises several unrelated types for "not available"
        hint = ("HF_HUB_OFFLINE is set: download it first (`hf download " + repo_id + "`) or pass a local folder"
                if offline else "check the id, your network and HF_TOKEN, or pass a local folder")
        raise FileNotFoundError(f"base model {repo_id!r} is not available: {hint} ({error})") from error
