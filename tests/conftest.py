import os

# Never wait ~45 s on Hugging Face hub retries: this machine and CI have no route to the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
