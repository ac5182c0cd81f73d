import os

# Never wait ~45 s on Hugging Face hub retries: this machine and CI have no route to the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# The CPU base model (clara_base_model) pretrains for minutes by default; tests run its real code path for a few
# steps. bench/learning.py and `clara run` use the full pretraining.
os.environ.setdefault("CLARA_CPU_BASE_STEPS", "20")
