"""Artifact storage: the layout under one root folder, atomic writes, sets of files published together, and a
content-addressed image store.

The layout (every folder and file name under the artifacts root is defined here and nowhere else):

    documents/<key>/extracted.json, images.json, captions.json, enriched.json   one folder per document partition
    images/<sha[:2]>/<sha>.<ext>                                                 figures, content-addressed
    corpus/chunks.jsonl, manifest.json                                           published together
    synthesis/qa.jsonl, paraphrases.jsonl, report.json                           published together
    datasets/pretrain.jsonl, instruction.jsonl, instruction_eval.jsonl,
             end_to_end.jsonl, end_to_end_eval.jsonl, state.json                 published together
    training/rate-<r>/<stage>/                                                   run folders (training.runs names
                                                                                 what is inside)
    evaluation/rate-<r>/report.json
    base_model/, base_model.json                                                 the CPU base and the base record
    cache/llm_responses.sqlite                                                   LLM answers (and parked failures)
    .staging/                                                                    sets being written (see Publication)

Write, check, publish: an artifact a later step reads is written to a staging folder, checked by its asset, and
only then published over the last good one; a failed, empty or check-failing result is discarded and the last
good artifact stays. A single file is written to a temporary sibling and renamed (`write_bytes_atomic`); a set of
files that belong together goes through `Publication`, which makes the set appear whole or not at all, also
across a crash (see its docstring).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# -- the layout ----------------------------------------------------------------------------------------------

DOCUMENTS_DIR = "documents"
EXTRACTED_FILE = "extracted.json"
DOCUMENT_IMAGES_FILE = "images.json"
CAPTIONS_FILE = "captions.json"
ENRICHED_FILE = "enriched.json"
IMAGES_DIR = "images"
CORPUS_DIR = "corpus"
CHUNKS_FILE = "chunks.jsonl"
MANIFEST_FILE = "manifest.json"
SYNTHESIS_DIR = "synthesis"
QA_FILE = "qa.jsonl"
PARAPHRASES_FILE = "paraphrases.jsonl"
SYNTHESIS_REPORT_FILE = "report.json"
DATASETS_DIR = "datasets"
# the trainer's stage name -> its training file; held-out rows of a stage go to <stem>_eval.jsonl
DATASET_FILES = {"pretrain": "pretrain.jsonl", "instruct": "instruction.jsonl", "e2e": "end_to_end.jsonl"}
DATASETS_STATE_FILE = "state.json"  # which corpus the datasets were built from (the nightly schedule reads it)
TRAINING_DIR = "training"
EVALUATION_DIR = "evaluation"
EVALUATION_REPORT_FILE = "report.json"
BASE_MODEL_DIR = "base_model"  # the CPU base's Hugging Face folder
BASE_RECORD_FILE = "base_model.json"  # the current BaseRecord
LLM_CACHE_FILE = "cache/llm_responses.sqlite"
STAGING_DIR = ".staging"


def eval_file_name(data_file: str) -> str:
    """`instruction.jsonl` -> `instruction_eval.jsonl`: where a stage's held-out rows go."""
    return data_file.removesuffix(".jsonl") + "_eval.jsonl"


def rate_dir_name(compression_rate: int | str) -> str:
    return f"rate-{int(compression_rate)}"


# -- single files ---------------------------------------------------------------------------------------------

def _write_all(handle, data: bytes) -> None:
    """Every byte of `data` to the open file (one place to inject a write fault in tests)."""
    handle.write(data)


def _naming(error: OSError, path: Path) -> OSError:
    """`error` with the artifact's path, so a disk-full failure says where: a write error from `f.write` has none."""
    if error.filename is not None or error.errno is None:
        return error
    return type(error)(error.errno, error.strerror or str(error), str(path))


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Writes `data` to `path` via a temporary sibling and a rename.

    `durable=False` skips the fsync: right for content-addressed files, whose integrity is re-checkable
    from their name, where an fsync per small file would dominate the cost.

    Raises:
        OSError: naming `path` (Errno 28 when the disk is full); the previous file is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except OSError as error:
        _unlink_quietly(tmp)
        raise _naming(error, path) from error
    except BaseException:
        _unlink_quietly(tmp)
        raise


def encode_json(obj: Any) -> bytes:
    """`obj` as UTF-8 JSON with a stable key order, as every JSON artifact is written."""
    return json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True).encode("utf-8") + b"\n"


def write_json_atomic(path: Path, obj: Any) -> bytes:
    """Writes `obj` as UTF-8 JSON (stable key order) atomically and returns the bytes written."""
    data = encode_json(obj)
    write_bytes_atomic(path, data)
    return data


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- sets of files published together ----------------------------------------------------------------------

_JOURNAL_SUFFIX = ".journal"
_OWNER_FILE = ".owner"
_LOCK_FILE = "publish.lock"
_STARTING_GRACE_S = 3600.0


class Publication:
    """New versions of artifact files, staged under `<root>/.staging/<id>/` and published together by `commit`.

        with store.publication() as pub:
            write_jsonl(pub.path(store.dataset_path("pretrain")), rows)   # streaming writers write here
            pub.write_bytes(store.datasets_state_path, data)
            ...check the staged files; raise to discard them...
            pub.commit()                                                  # all of them, or none

    Leaving the block without `commit` (an exception, a failed check) discards the staged files: the published
    ones are never touched before every new file is complete.

    Why this is crash-safe (a journal that rolls forward): staging sits on the artifacts' filesystem, so
    publishing a file is one `os.replace`. `commit` first makes every staged file durable (fsync), then writes a
    journal naming the set (atomically, durably), then renames each file over its destination, then deletes the
    journal. Before the journal exists nothing was published (a crash leaves an orphan staging folder, removed
    later: a rollback); once it exists every new file is complete, so a crash between renames is finished by
    `recover_publications` on the next start (a roll-forward; renaming is idempotent, a file already moved is
    skipped). One lock file serialises commits and recoveries across processes, so two runs publishing the same
    set leave one whole set, the later one. A reader that opens the files one by one while a commit runs may
    still see both versions for the microseconds of the renames; the pipeline's readers are the later steps of
    the same run, or runs started after it.
    """

    def __init__(self, root: Path):
        self.root = Path(os.path.abspath(root))
        self.id = uuid.uuid4().hex
        self.dir = self.root / STAGING_DIR / self.id
        # The owner file is locked while this process lives (recovery removes only staging folders whose owner is
        # gone); the folder is made under a hidden name and renamed once locked, so no recovery sees it unlocked.
        starting = self.dir.with_name(f".{self.id}")
        starting.mkdir(parents=True)
        self._owner = open(starting / _OWNER_FILE, "wb")
        fcntl.flock(self._owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(starting, self.dir)
        self._staged: dict[str, Path] = {}  # destination relative to the root -> staged file
        self.committed = False
        self._journalled = False  # from here on the set belongs to recovery if this process fails

    def path(self, dest: Path) -> Path:
        """Where to write `dest`'s new content (its folder exists). Nothing is published before `commit`.

        Raises:
            ValueError: when `dest` is not under the artifacts root.
        """
        rel = self._relative(dest)
        staged = self.dir / "files" / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        self._staged[rel] = staged
        return staged

    def write_bytes(self, dest: Path, data: bytes) -> Path:
        """Stages `data` as `dest`'s new content; returns the staged file.

        Raises:
            OSError: naming `dest` (Errno 28 when the disk is full).
        """
        staged = self.path(dest)
        try:
            with open(staged, "wb") as handle:
                _write_all(handle, data)
        except OSError as error:
            raise _naming(error, Path(dest)) from error
        return staged

    def write_json(self, dest: Path, obj: Any) -> bytes:
        """Stages `obj` as JSON (the format of `write_json_atomic`); returns the bytes."""
        data = encode_json(obj)
        self.write_bytes(dest, data)
        return data

    def commit(self) -> list[Path]:
        """Publishes every staged file over its destination, as one set; returns the destinations.

        Raises:
            FileNotFoundError: when a destination was asked for with `path` but nothing was written there.
            OSError: naming the file, when making the staged files durable fails (Errno 28: the disk is full);
                nothing was published then.
        """
        if self.committed:
            raise RuntimeError(f"publication {self.id} was committed already")
        for rel, staged in self._staged.items():
            if not staged.is_file():
                raise FileNotFoundError(f"{self.root / rel}: nothing was staged for it")
            try:
                with open(staged, "rb+") as handle:
                    os.fsync(handle.fileno())
            except OSError as error:
                raise _naming(error, self.root / rel) from error
            os.chmod(staged, 0o644)
        for folder in {staged.parent for staged in self._staged.values()}:
            _fsync_dir(folder)
        journal = self.root / STAGING_DIR / f"{self.id}{_JOURNAL_SUFFIX}"
        with _publish_lock(self.root):
            write_bytes_atomic(journal, json.dumps(sorted(self._staged)).encode("utf-8"))
            _fsync_dir(journal.parent)
            self._journalled = True
            _roll_forward(self.root, self.id, sorted(self._staged))
        self.committed = True
        self.discard()
        return [self.root / rel for rel in sorted(self._staged)]

    def discard(self) -> None:
        """Removes the staging folder (what is published stays); a set whose journal was written but whose renames
        failed is left for `recover_publications` to finish."""
        if not self._owner.closed:
            self._owner.close()
        if self.committed or not self._journalled:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _relative(self, dest: Path) -> str:
        absolute = Path(os.path.abspath(dest))
        try:
            rel = absolute.relative_to(self.root)
        except ValueError:
            raise ValueError(f"{dest} is not under the artifacts root {self.root}") from None
        if not rel.parts or rel.parts[0] == STAGING_DIR:
            raise ValueError(f"{dest} is not an artifact path")
        return rel.as_posix()


@contextmanager
def _publish_lock(root: Path) -> Iterator[None]:
    path = Path(root) / STAGING_DIR / _LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _roll_forward(root: Path, publication_id: str, rels: list[str]) -> None:
    """Moves each staged file of a journalled set over its destination, then deletes the journal (lock held)."""
    staging = root / STAGING_DIR / publication_id / "files"
    for rel in rels:
        staged, dest = staging / rel, root / rel
        if staged.is_file():  # else moved already, before a crash
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, dest)
    for folder in {(root / rel).parent for rel in rels}:
        _fsync_dir(folder)
    os.unlink(root / STAGING_DIR / f"{publication_id}{_JOURNAL_SUFFIX}")


def recover_publications(root: Path) -> list[str]:
    """Finishes the commits a crash interrupted and removes staging folders left by dead processes.

    Returns the ids of the sets it finished publishing. Cheap when there is nothing to do (one `listdir`).
    """
    root = Path(os.path.abspath(root))
    staging = root / STAGING_DIR
    try:
        entries = os.listdir(staging)
    except FileNotFoundError:
        return []
    finished = []
    if any(name.endswith(_JOURNAL_SUFFIX) for name in entries):
        with _publish_lock(root):  # a journal seen under the lock belongs to a committer that died
            for name in sorted(os.listdir(staging)):
                if name.endswith(_JOURNAL_SUFFIX):
                    publication_id = name.removesuffix(_JOURNAL_SUFFIX)
                    rels = json.loads((staging / name).read_text(encoding="utf-8"))
                    _roll_forward(root, publication_id, rels)
                    logger.warning(f"finished publishing {', '.join(rels)} (a commit interrupted by a crash)")
                    finished.append(publication_id)
    for name in os.listdir(staging):
        folder = staging / name
        if not folder.is_dir() or (staging / f"{name}{_JOURNAL_SUFFIX}").exists():
            continue
        try:
            if name.startswith("."):  # a folder being set up; left over only when its process died right then
                dead = time.time() - folder.stat().st_mtime > _STARTING_GRACE_S
            else:
                dead = not _owned(folder)
        except FileNotFoundError:  # its owner finished meanwhile
            continue
        if dead:
            shutil.rmtree(folder, ignore_errors=True)  # never committed: its owner died before publishing
    return finished


def _owned(folder: Path) -> bool:
    """Whether a live process holds the staging folder (its owner file is locked)."""
    try:
        handle = open(folder / _OWNER_FILE, "rb")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def publish_together(root: Path, files: Mapping[Path, bytes | Path]) -> list[Path]:
    """Publishes `files` (destination -> new bytes, or a finished file on the same filesystem to move in) as one
    set under `root`: every destination gets its new content, or, if anything fails first, none does.

    Raises:
        OSError: naming the file (Errno 28 when the disk is full); nothing was published.
    """
    with publication(root) as pub:
        for dest, content in files.items():
            if isinstance(content, (bytes, bytearray)):
                pub.write_bytes(dest, bytes(content))
            else:
                os.replace(content, pub.path(dest))
        return pub.commit()


@contextmanager
def publication(root: Path) -> Iterator[Publication]:
    """A `Publication` under `root`, discarded on leaving the block unless committed."""
    pub = Publication(root)
    try:
        yield pub
    finally:
        if not pub.committed:
            pub.discard()


# -- images ------------------------------------------------------------------------------------------------

_EXTENSIONS = {"png": ".png", "jpeg": ".jpg"}


class ImageStore:
    """Images under `<root>/<sha[:2]>/<sha>.<ext>`: written once, shared by every document that has them."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path_for(self, sha256: str, fmt: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}{_EXTENSIONS[fmt]}"

    def put(self, data: bytes, fmt: str) -> str:
        """Stores `data` (a normalized PNG/JPEG) unless already present; returns its sha256."""
        sha = sha256_bytes(data)
        path = self.path_for(sha, fmt)
        if not path.exists():
            write_bytes_atomic(path, data, durable=False)
        return sha

    def verify(self, sha256: str, fmt: str) -> str | None:
        """Returns None when the stored file exists with the right content, else what is wrong."""
        path = self.path_for(sha256, fmt)
        if not path.exists():
            return f"{path} is missing"
        actual = sha256_file(path)
        if actual != sha256:
            return f"{path} is corrupt (sha256 {actual[:12]}..., expected {sha256[:12]}...)"
        return None


def hash_only_sink(data: bytes, fmt: str) -> str:
    """An image sink that stores nothing (for `clara extract` without an image folder)."""
    return sha256_bytes(data)


# -- the store ---------------------------------------------------------------------------------------------

class ArtifactStore:
    """The layout of everything the pipeline writes under one root folder (see the module docstring)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def publication(self):
        """A context manager giving a `Publication` under this root (see there)."""
        return publication(self.root)

    def recover(self) -> list[str]:
        """Finishes commits a crash interrupted (`recover_publications`); returns their ids."""
        return recover_publications(self.root)

    # per document
    @property
    def images(self) -> ImageStore:
        return ImageStore(self.root / IMAGES_DIR)

    def document_dir(self, partition_key: str) -> Path:
        return self.root / DOCUMENTS_DIR / partition_key

    def extracted_document_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / EXTRACTED_FILE

    def document_images_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / DOCUMENT_IMAGES_FILE

    def captions_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / CAPTIONS_FILE

    def enriched_document_path(self, partition_key: str) -> Path:
        return self.document_dir(partition_key) / ENRICHED_FILE

    # corpus and synthesis
    @property
    def corpus_dir(self) -> Path:
        return self.root / CORPUS_DIR

    @property
    def chunks_path(self) -> Path:
        return self.corpus_dir / CHUNKS_FILE

    @property
    def corpus_manifest_path(self) -> Path:
        return self.corpus_dir / MANIFEST_FILE

    @property
    def synthesis_dir(self) -> Path:
        return self.root / SYNTHESIS_DIR

    @property
    def qa_pairs_path(self) -> Path:
        return self.synthesis_dir / QA_FILE

    @property
    def paraphrases_path(self) -> Path:
        return self.synthesis_dir / PARAPHRASES_FILE

    @property
    def synthesis_report_path(self) -> Path:
        return self.synthesis_dir / SYNTHESIS_REPORT_FILE

    # datasets
    @property
    def datasets_dir(self) -> Path:
        return self.root / DATASETS_DIR

    def dataset_path(self, stage: str) -> Path:
        """A stage's training file (`stage`: a key of DATASET_FILES)."""
        return self.datasets_dir / DATASET_FILES[stage]

    def dataset_eval_path(self, stage: str) -> Path:
        """A stage's held-out rows."""
        return self.datasets_dir / eval_file_name(DATASET_FILES[stage])

    @property
    def datasets_state_path(self) -> Path:
        return self.datasets_dir / DATASETS_STATE_FILE

    # training and evaluation
    def training_stage_dir(self, compression_rate: int | str, stage: str) -> Path:
        return self.root / TRAINING_DIR / rate_dir_name(compression_rate) / stage

    def evaluation_report_path(self, compression_rate: int | str) -> Path:
        return self.root / EVALUATION_DIR / rate_dir_name(compression_rate) / EVALUATION_REPORT_FILE

    @property
    def base_model_dir(self) -> Path:
        return self.root / BASE_MODEL_DIR

    @property
    def base_record_path(self) -> Path:
        return self.root / BASE_RECORD_FILE

    @property
    def llm_cache_path(self) -> Path:
        return self.root / LLM_CACHE_FILE
