"""The C++ op DeepSpeed builds the first time the trainer runs on CPU, found without importing torch or DeepSpeed.

On its CPU accelerator DeepSpeed's communication backend JIT-compiles `deepspeed_shm_comm` (shared-memory
collectives; `deepspeed.comm.torch.build_shm_op`) in every process group it starts, even a one-process one. The
first build takes about a minute and needs a C++ compiler and ninja; torch caches the result under
TORCH_EXTENSIONS_DIR (default `~/.cache/torch_extensions/py<XY>_<cpu|cuXYZ>`), so later runs load it at once.
On GPUs DeepSpeed's CUDA accelerator builds nothing: the trainer's optimizer is torch's AdamW.

Pure stdlib: the launcher calls this before it starts the trainer, to announce the build or explain why it cannot
happen.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CPU_OP = "deepspeed_shm_comm"  # deepspeed.ops.op_builder.cpu.ShareMemCommBuilder.NAME


@dataclass(frozen=True)
class OpBuild:
    """An op the trainer will compile before its first step, and where torch caches it."""

    name: str
    directory: Path  # the extension's build folder; holds `<name>.so` once built

    @property
    def notice(self) -> str:
        return (f"building DeepSpeed's {self.name} C++ op once (about a minute; cached in "
                f"{self.directory.parent})")


def pending_op_build(num_gpus: int, environ: Mapping[str, str] | None = None) -> OpBuild | None:
    """Return the op a job on `num_gpus` GPUs per node (0: CPU) will build first, or None when there is none to
    build: a GPU job, DeepSpeed installed with the op prebuilt, or the op already in the extensions cache."""
    env = os.environ if environ is None else environ
    if num_gpus > 0 or sys.platform != "linux" or _prebuilt(CPU_OP):
        return None
    directory = extensions_root(env) / CPU_OP
    if any(directory.glob(f"{CPU_OP}*.so")):  # torch names a rebuild after a source change <name>_v1.so
        return None
    return OpBuild(CPU_OP, directory)


def missing_build_tools(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return what torch's JIT build needs and this environment's PATH lacks: the C++ compiler ($CXX, else c++)
    and ninja (torch runs `ninja --version` before building)."""
    env = os.environ if environ is None else environ
    path = env.get("PATH", os.defpath)
    compiler = env.get("CXX") or "c++"
    missing = []
    if shutil.which(compiler, path=path) is None:
        missing.append(f"a C++ compiler ({compiler!r} is not on PATH; install g++ or set CXX)")
    if shutil.which("ninja", path=path) is None:
        missing.append("ninja (pip install ninja, or your system's package)")
    return missing


def extensions_root(environ: Mapping[str, str]) -> Path:
    """Return the folder torch.utils.cpp_extension builds into (its `_get_build_directory` without the name)."""
    if environ.get("TORCH_EXTENSIONS_DIR"):
        return Path(environ["TORCH_EXTENSIONS_DIR"])
    # torch._appdirs.user_cache_dir on Linux, then `py<XY>_<accelerator>` as torch names the build folder.
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    python = f"py{sys.version_info.major}{sys.version_info.minor}{getattr(sys, 'abiflags', '')}"
    return Path(os.path.realpath(os.path.join(cache, "torch_extensions"))) / f"{python}_{_torch_accelerator()}"


def _torch_accelerator() -> str:
    """`rocmXY`, `cuXYZ` or `cpu`, from torch/version.py, read without importing torch (seconds we need not spend)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return "cpu"
    version = runpy.run_path(os.path.join(spec.submodule_search_locations[0], "version.py"))
    if version.get("hip"):
        return "rocm" + str(version["hip"]).replace(".", "")
    if version.get("cuda"):
        return "cu" + str(version["cuda"]).replace(".", "")
    return "cpu"


def _prebuilt(name: str) -> bool:
    """Whether DeepSpeed was installed with `name` compiled in (DS_BUILD_OPS=1), per its installed-ops record."""
    spec = importlib.util.find_spec("deepspeed")
    if spec is None or not spec.submodule_search_locations:
        return False
    record = Path(spec.submodule_search_locations[0]) / "git_version_info_installed.py"
    if not record.is_file():
        return False
    return bool(runpy.run_path(str(record)).get("installed_ops", {}).get(name, False))
