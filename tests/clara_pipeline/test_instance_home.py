"""A new DAGSTER_HOME opened by several processes at once: one creates the storage, the others find it ready."""

import subprocess
import sys
import time

import dagster as dg

OPEN = '''
import sys, time
from pathlib import Path
start = float(sys.argv[2])
while time.time() < start:  # every process leaves the starting line together
    time.sleep(0.001)
from clara_pipeline.settings import ensure_dagster_home
import dagster as dg
home = ensure_dagster_home(Path(sys.argv[1]))
with dg.DagsterInstance.from_config(str(home)) as instance:
    print(len(instance.get_runs(limit=1)))
'''


def test_processes_opening_a_new_instance_together_all_succeed_and_leave_it_usable(tmp_path):
    home = tmp_path / "home"
    start = time.time() + 8  # after the interpreters and dagster have been imported
    processes = [subprocess.Popen([sys.executable, "-c", OPEN, str(home), str(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], [err[-2000:] for _, err in results]
    assert all(out.strip() == "0" for out, _ in results)
    with dg.DagsterInstance.from_config(str(home)) as instance:  # and it opens afterwards (one alembic head)
        assert instance.get_runs(limit=1) == []
    assert (home / "dagster.yaml").read_text().strip() and (home / ".clara-storage-ready").exists()
