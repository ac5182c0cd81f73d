"""Importing clara_model does nothing heavy and changes no global state."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, os, sys, time
import torch, transformers, peft, safetensors, jinja2  # the dependencies' own import effects are not ours
env, threads, dtype = dict(os.environ), torch.get_num_threads(), torch.get_default_dtype()
printoptions = str(torch._tensor_str.PRINT_OPTS.__dict__)
start = time.perf_counter()
import clara_model
seconds = time.perf_counter() - start
print(json.dumps({
    "env_changed": sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)),
    "threads_same": threads == torch.get_num_threads(),
    "dtype_same": dtype == torch.get_default_dtype(),
    "printoptions_same": printoptions == str(torch._tensor_str.PRINT_OPTS.__dict__),
    "heavy_modules": [m for m in ("dagster", "clara_pipeline", "deepspeed") if m in sys.modules],
    "seconds": seconds,
}))
"""


def test_import_has_no_side_effects():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["env_changed"] == []
    assert report["threads_same"] and report["dtype_same"] and report["printoptions_same"]
    assert report["heavy_modules"] == []  # never imports Dagster or the pipeline
    assert report["seconds"] < 10


def test_public_api_is_exported():
    import clara_model

    for name in clara_model.__all__:
        assert hasattr(clara_model, name), name
    assert callable(clara_model.validate_data_main)
