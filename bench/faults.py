"""The fault suite: does a fault ever lose data, and what does recovering cost?

    OMP_NUM_THREADS=1 python bench/faults.py            # every scenario, 10 kills (about 15-20 min on 2 cores)
    python bench/faults.py --quick                      # fewer kills, smaller bombs (a few minutes)
    python bench/faults.py --only endpoint_faults,kill --kills 2 --keep /tmp/faults

Each scenario runs `clara run` as a real subprocess (its own process group) on a private copy of `raw_data/`, with
its own CLARA_RAW_DATA, CLARA_ARTIFACTS and DAGSTER_HOME, against the loopback OpenAI-compatible server
(`clara_pipeline.llm.loopback`, on a thread of this process, which counts every request it gets). Its final data
(`datasets/*.jsonl`, `synthesis/*.jsonl`, `corpus/*.jsonl` under the artifacts folder) is compared byte for byte
with that of a fault-free reference run over the same corpus; the loopback answers are deterministic, so the
reference is exactly what a run must produce.

Scenarios:

- `endpoint_faults`: 30% of the requests fail (429, 500, 503, a hang past the client's timeout, a Python dict
  instead of JSON, fenced JSON, truncated JSON, a bad QA pair among good ones). The run must absorb them.
- `endpoint_down_then_back`: a run against a port nobody listens on, then a normal run once the server is up on
  that port.
- `kill_<phase>_<i>`: SIGKILL of the whole `clara run` process group at a seeded random moment of ingestion,
  synthesis or training, followed by a normal run. Training kills use `CLARA_BASE_MODEL=tiny` and a few steps.
- `disk_full`: the artifacts folder on a small tmpfs: (a) too small for a first run, then grown; (b) filled up
  under a good set of artifacts, a run, then freed. Where `mount` is refused, (b) runs with RLIMIT_FSIZE instead
  (EFBIG, not ENOSPC), as `method` says.
- `concurrent_runs`: two `clara run` started at the same moment on the same folders.
- `document_deleted_mid_run`: a document removed while ingestion runs; compared with a reference over the corpus
  without it.
- `hostile_files`: links out of the folder (to a file, to a folder, to /dev/zero), a link loop, a FIFO, a zip-bomb
  DOCX and a huge text file beside the corpus. Each must be refused alone, and a canary string planted outside
  the raw folder must appear nowhere under the artifacts or DAGSTER_HOME.

Per scenario:

- `finished`: the last run exited with the status the reference run exited with (hostile files: the run ended
  on its own, every hostile entry is named in its output and every good document was ingested);
- `data_lost`: rows (and whole files) of the compared files that differ from the reference after recovery;
- `data_lost_before_recovery`: the same, measured right after the fault, before any recovery run: on a folder
  that held good data (disk full, concurrent runs, a training kill on trained data) every difference counts;
  on a fresh folder, only files that exist (a published file must be complete and right; a missing one is not
  yet made);
- `extra_paid_calls`: answered LLM requests (HTTP 200, billed by a real endpoint) beyond those of the same work
  without the fault: the reference run's calls from an empty folder, 0 on a folder whose answers are cached;
  failed requests (429, 5xx, hangs) are in `requests`;
- `time_to_recover_s`: wall seconds of the run(s) after the fault that brought the data back (for a fault that
  lasts the whole run, the run under it; the reference run's wall time is at the top).

Prints one JSON object on stdout (progress on stderr), with the total wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


from clara_pipeline.llm.loopback import FaultPlan, LoopbackServer, closed_port  # noqa: E402

COMPARED = ("datasets/*.jsonl", "synthesis/*.jsonl", "corpus/*.jsonl")
HTTP_FAULTS = ("rate_limit", "server_error", "unavailable", "timeout", "bad_request")  # not answered: not billed
# 30% of requests: transient HTTP faults and imperfect answers, as a real endpoint has them. `bad_request` (a
# 400 for a well-formed request) is left out: it is a client bug, not a transient fault, and is not retried.
MIXED_FAULTS = {"rate_limit": 0.05, "server_error": 0.04, "unavailable": 0.04, "timeout": 0.03, "malformed": 0.04,
                "fenced": 0.03, "truncated": 0.04, "bad_pair": 0.03}
CLIENT_TIMEOUT_S = 5  # CLARA_LLM_TIMEOUT_S of every run; the `timeout` fault hangs longer than this
TAG_VAR = "CLARA_FAULTS_TAG"  # in every child's environment: finds the processes a killed run left behind
SCENARIOS = ("endpoint_faults", "endpoint_down_then_back", "kill", "disk_full", "concurrent_runs",
             "document_deleted_mid_run", "hostile_files")
DELETED_DOCUMENT = "system_architecture_diagram.png"  # last in key order: still to be ingested mid-run


def log(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the endpoint ----------------------------------------------------------------------------------------------

class Endpoint(LoopbackServer):
    """The loopback server, optionally on a port chosen beforehand (to bring an endpoint back where it was)."""

    def __init__(self, port: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.fixed_port = self.port = port  # `url` is known before the server starts

    def start(self) -> "Endpoint":
        super().start(self.fixed_port)
        return self

    def calls(self) -> dict:
        """Requests so far: `paid` (answered with HTTP 200), `requests` (all), by fault."""
        with self._lock:
            unanswered = sum(self.stats.by_fault.get(name, 0) for name in HTTP_FAULTS)
            return {"paid": self.stats.total - unanswered, "requests": self.stats.total,
                    "by_fault": dict(self.stats.by_fault)}


# -- runs ------------------------------------------------------------------------------------------------------

@dataclass
class Run:
    rc: int | None  # None: still running when its time limit came (then killed)
    wall_s: float
    lines: list[tuple[float, str]]  # (seconds since start, line)
    killed_at_s: float | None = None
    phase_hit: str | None = None
    timed_out: bool = False

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def phase_times(self) -> dict[str, float]:
        """Seconds since start at which each phase began, from the lines `clara run` prints."""
        times: dict[str, float] = {}
        for t, line in self.lines:
            for phase, pattern in _PHASE_MARKERS:
                if phase not in times and pattern.search(line):
                    times[phase] = t
        return times


_PHASE_MARKERS = [("ingestion", re.compile(r"^raw data: ")), ("synthesis", re.compile(r"^\d+ documents: ")),
                  ("synthesis_done", re.compile(r"^synthesis done")),
                  ("training", re.compile(r"^training at compression rate")),
                  ("evaluation", re.compile(r"^training done"))]


_DOCUMENT_LINE = re.compile(r"^  (ok|FAILED|up to date) ")


def after_document(k: int, u: float) -> Callable[[Started], float | None]:
    """The moment a fraction `u` into the ingestion of document k+1: after the k-th document's line (k = 0: the
    `raw data:` line) plus `u` times the last gap between such lines in this very run (load changes between runs,
    so a moment measured on the reference would land elsewhere)."""
    def moment(started: Started) -> float | None:
        marks = [t for t, line in list(started.lines) if _PHASE_MARKERS[0][1].search(line)][:1]
        marks += [t for t, line in list(started.lines) if _DOCUMENT_LINE.search(line)]
        if len(marks) <= k:
            return None
        gap = marks[k] - marks[k - 1] if k >= 1 else 1.0
        return marks[k] + u * gap
    return moment


def into_synthesis(u: float, reference: "Run") -> Callable[[Started], float | None]:
    """The moment a fraction `u` into synthesis: the reference's synthesis time, scaled by how this run's
    ingestion compared with the reference's (the machine's load of the moment)."""
    ref = reference.phase_times()
    ref_ingest = max(0.1, ref["synthesis"] - ref["ingestion"])
    ref_synth = ref.get("synthesis_done", reference.wall_s) - ref["synthesis"]

    def moment(started: Started) -> float | None:
        times = Run(None, 0.0, list(started.lines)).phase_times()
        if "synthesis" not in times:
            return None
        scale = (times["synthesis"] - times.get("ingestion", 0.0)) / ref_ingest
        return times["synthesis"] + u * ref_synth * max(0.2, scale)
    return moment


def after_line(pattern: re.Pattern, delay: float) -> Callable[[Started], float | None]:
    def moment(started: Started) -> float | None:
        seen = started.seen(pattern)
        return None if seen is None else seen + delay
    return moment


def phase_at(lines: list[tuple[float, str]]) -> str:
    """The phase a run was in after `lines`: the last marker seen."""
    phase = "startup"
    for _, line in lines:
        for name, pattern in _PHASE_MARKERS:
            if pattern.search(line):
                phase = {"synthesis_done": "after synthesis"}.get(name, name)
    return phase


@dataclass
class Workspace:
    """One scenario's folders: raw/, artifacts/, home/ under `root`, and the environment of its runs."""

    root: Path
    url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @classmethod
    def create(cls, parent: Path, name: str, url: str, corpus: Path, **kwargs) -> "Workspace":
        root = parent / name
        root.mkdir(parents=True)
        shutil.copytree(corpus, root / "raw", symlinks=True)
        return cls(root, url, **kwargs)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLARA_", "DAGSTER_"))}
        env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                    "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO),
                    "CLARA_RAW_DATA": str(self.raw), "CLARA_ARTIFACTS": str(self.artifacts),
                    "DAGSTER_HOME": str(self.home), "CLARA_LLM_BASE_URL": self.url,
                    "CLARA_LLM_MODEL": "loopback-chat", "CLARA_LLM_TIMEOUT_S": str(CLIENT_TIMEOUT_S),
                    "CLARA_BASE_MODEL": "tiny", TAG_VAR: self.tag})
        env.update(self.extra_env)
        return env


def start_clara(ws: Workspace, args: list[str], preexec: Callable[[], None] | None = None) -> "Started":
    proc = subprocess.Popen([sys.executable, "-m", "clara_pipeline.cli", "run", *args], cwd=ws.root, env=ws.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                            start_new_session=True, preexec_fn=preexec)
    return Started(proc)


class Started:
    """A `clara run` in its own process group, its output read line by line (timestamped) on a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.started = time.monotonic()
        self.lines: list[tuple[float, str]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def seen(self, pattern: re.Pattern) -> float | None:
        """Seconds since start at which a line matching `pattern` came, or None."""
        return next((t for t, line in list(self.lines) if pattern.search(line)), None)

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def wait(self, timeout_s: float, *, kill_at: Callable[["Started"], float | None] | None = None,
             on_tick: Callable[["Started"], None] | None = None) -> Run:
        """Waits for the run to end; `kill_at(started)` gives the moment (seconds since start) to SIGKILL its
        process group, once it can tell (else None). A run past `timeout_s` is killed and marked timed out."""
        killed_at = phase = None
        while self.proc.poll() is None:
            now = time.monotonic() - self.started
            if on_tick is not None:
                on_tick(self)
            if kill_at is not None and killed_at is None:
                moment = kill_at(self)
                if moment is not None and now >= moment:
                    phase = phase_at(list(self.lines))
                    self.kill_group()
                    killed_at = now
            if now > timeout_s:
                self.kill_group()
                self.proc.wait()
                self._reader.join(timeout=5)
                return Run(None, now, list(self.lines), killed_at, phase, timed_out=True)
            time.sleep(0.05)
        self._reader.join(timeout=10)
        return Run(self.proc.returncode, time.monotonic() - self.started, list(self.lines), killed_at, phase)


def run_clara(ws: Workspace, args: list[str], timeout_s: float, label: str, **wait_kwargs) -> Run:
    log(f"{label}: clara run {' '.join(args)}")
    run = start_clara(ws, args).wait(timeout_s, **wait_kwargs)
    save_output(ws, label, run)
    status = "timed out" if run.timed_out else f"killed at {run.killed_at_s:.1f} s ({run.phase_hit})" \
        if run.killed_at_s is not None else f"exit {run.rc}"
    log(f"{label}: {status} after {run.wall_s:.1f} s")
    return run


def save_output(ws: Workspace, label: str, run: Run) -> None:
    """The run's output beside its folders (kept with --keep), one file per run."""
    name = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")[:60]
    (ws.root / f"{len(list(ws.root.glob('*.log'))):02d}_{name}.log").write_text(
        "".join(f"{t:8.2f}  {line}\n" for t, line in run.lines), encoding="utf-8")


def leftover_processes(tag: str) -> list[int]:
    """Processes still alive whose environment carries this workspace's tag (children a killed run left)."""
    pids = []
    needle = f"{TAG_VAR}={tag}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return sorted(pids)


def end_processes(pids: list[int]) -> None:
    """SIGKILL these processes (ours: started by a run of this suite), one by one."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- comparing -------------------------------------------------------------------------------------------------

def compared_files(artifacts: Path) -> dict[str, bytes]:
    return {path.relative_to(artifacts).as_posix(): path.read_bytes()
            for pattern in COMPARED for path in sorted(artifacts.glob(pattern))}


def differences(reference: dict[str, bytes], artifacts: Path, *, present_only: bool = False) -> tuple[int, dict]:
    """(rows and files that differ from the reference, per-file details). A file missing on one side counts
    its rows on the other (at least 1); two present files count the rows in one and not the other, or, when
    they hold the same rows in another order, the rows out of place. `present_only`: ignore missing files."""
    actual = compared_files(artifacts) if artifacts.exists() else {}
    lost, details = 0, {}
    for name in sorted(set(reference) | set(actual)):
        ref, got = reference.get(name), actual.get(name)
        if ref == got:
            continue
        if got is None:
            if present_only:
                continue
            count, why = max(1, len(ref.splitlines())), "missing"
        elif ref is None:
            count, why = max(1, len(got.splitlines())), "not in the reference"
        else:
            ref_rows, got_rows = ref.splitlines(), got.splitlines()
            missing = Counter(ref_rows) - Counter(got_rows)
            extra = Counter(got_rows) - Counter(ref_rows)
            count = sum(missing.values()) + sum(extra.values())
            why = f"{sum(missing.values())} rows missing, {sum(extra.values())} rows not in the reference " \
                  f"({len(got_rows)} rows, reference {len(ref_rows)})"
            if count == 0:
                count = sum(a != b for a, b in zip(ref_rows, got_rows))
                why = f"same rows, {count} out of place" if count else "same rows in the same order, other bytes"
                count = max(count, 1)
        lost += count
        details[name] = why
    return lost, details


def canary_hits(canary: bytes, *roots: Path) -> list[str]:
    hits = []
    for root in roots:
        for path in root.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink() and canary in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def tracebacks(run: Run) -> int:
    return sum(line.startswith("Traceback (most recent call last)") for _, line in run.lines)


def tail(run: Run, n: int = 6) -> list[str]:
    return [line[:300] for _, line in run.lines[-n:]]


# -- the suite -------------------------------------------------------------------------------------------------

class Suite:
    def __init__(self, args: argparse.Namespace, root: Path):
        self.args = args
        self.root = root
        self.rng = random.Random(args.seed)
        self.corpus = Path(args.corpus).resolve()
        self.reference: dict[str, bytes] = {}
        self.ref_run: Run | None = None
        self.ref_calls = 0
        self.ref_workspace: Workspace | None = None

    # helpers

    def expected_rc(self) -> int | None:
        return self.ref_run.rc if self.ref_run else None

    def workspace(self, name: str, url: str, corpus: Path | None = None, **kwargs) -> Workspace:
        return Workspace.create(self.root, name, url, corpus or self.corpus, **kwargs)

    def result(self, name: str, *, finished: bool, lost: int, lost_details: dict, paid_extra: int | None,
               recover_s: float | None, before: int | None = None, before_details: dict | None = None,
               **details) -> dict:
        entry = {"scenario": name, "finished": finished, "data_lost": lost, "data_lost_before_recovery": before,
                 "extra_paid_calls": paid_extra,
                 "time_to_recover_s": None if recover_s is None else round(recover_s, 1)}
        if lost_details:
            details["differences"] = lost_details
        if before_details:
            details["differences_before_recovery"] = before_details
        entry["details"] = details
        log(f"{name}: finished={finished} data_lost={lost} before_recovery={before} extra_paid_calls={paid_extra} "
            f"time_to_recover_s={entry['time_to_recover_s']}")
        return entry

    def skip_args(self) -> list[str]:
        return ["--skip-training"]

    # the reference

    def run_reference(self) -> None:
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("reference", server.url)
            run = run_clara(ws, self.skip_args(), self.args.run_timeout, "reference")
            calls = server.calls()
        if run.rc is None or not list(ws.artifacts.glob("datasets/*.jsonl")):
            raise SystemExit(f"the reference run failed (exit {run.rc}); its output ends:\n" + "\n".join(tail(run, 30)))
        self.ref_run, self.ref_calls, self.ref_workspace = run, calls["paid"], ws
        self.reference = compared_files(ws.artifacts)

    def reference_without(self, document: str) -> tuple[dict[str, bytes], int | None, int]:
        """(files, exit status, paid calls) of a fault-free run over the corpus without `document`."""
        corpus = self.root / "corpus-without"
        shutil.copytree(self.corpus, corpus, symlinks=True)
        (corpus / document).unlink()
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("reference-without", server.url, corpus)
            run = run_clara(ws, self.skip_args(), self.args.run_timeout, "reference without " + document)
            paid = server.calls()["paid"]
        shutil.rmtree(corpus)
        return compared_files(ws.artifacts), run.rc, paid

    # scenarios

    def endpoint_faults(self) -> dict:
        plan = FaultPlan(rates=MIXED_FAULTS, seed=self.args.seed, retry_after_s=0.5, hang_s=CLIENT_TIMEOUT_S + 3)
        with Endpoint(latency_s=self.args.latency, faults=plan) as server:
            ws = self.workspace("endpoint_faults", server.url)
            run = run_clara(ws, self.skip_args(), self.args.run_timeout, "endpoint_faults")
            calls = server.calls()
        lost, details = differences(self.reference, ws.artifacts)
        return self.result("endpoint_faults", finished=run.rc == self.expected_rc(), lost=lost, lost_details=details,
                           paid_extra=calls["paid"] - self.ref_calls, recover_s=run.wall_s, rc=run.rc,
                           requests=calls["requests"], faults_injected=calls["by_fault"],
                           fault_rates=MIXED_FAULTS, tracebacks=tracebacks(run),
                           **({"output_tail": tail(run)} if lost or run.rc != self.expected_rc() else {}))

    def endpoint_down_then_back(self) -> dict:
        port = closed_port()
        server = Endpoint(port=port, latency_s=self.args.latency)
        ws = self.workspace("endpoint_down_then_back", server.url)
        down = run_clara(ws, self.skip_args(), self.args.run_timeout, "endpoint down")
        with server:
            back = run_clara(ws, self.skip_args(), self.args.run_timeout, "endpoint back")
            calls = server.calls()
        lost, details = differences(self.reference, ws.artifacts)
        names_url = f"127.0.0.1:{port}" in down.text
        return self.result("endpoint_down_then_back", finished=back.rc == self.expected_rc(), lost=lost,
                           lost_details=details, paid_extra=calls["paid"] - self.ref_calls, recover_s=back.wall_s,
                           down_run={"rc": down.rc, "wall_s": round(down.wall_s, 1), "names_the_url": names_url,
                                     "tracebacks": tracebacks(down),
                                     "lines_naming_the_url": sum(f"127.0.0.1:{port}" in line for _, line in down.lines),
                                     "output_tail": tail(down, 4)},
                           rc=back.rc, requests=calls["requests"])

    def kill(self) -> list[dict]:
        n = self.args.kills
        n_train = 0 if self.args.no_training else max(1, round(n * 0.2)) if n >= 3 else 0
        n_ingest = (n - n_train + 1) // 2
        phases = ["ingestion"] * n_ingest + ["synthesis"] * (n - n_train - n_ingest) + ["training"] * n_train
        assert self.ref_run is not None
        n_documents = len([line for _, line in self.ref_run.lines if _DOCUMENT_LINE.search(line)])
        results, train_ws, train_server = [], None, None
        counts: Counter[str] = Counter()
        try:
            for phase in phases:
                counts[phase] += 1
                name = f"kill_{phase}_{counts[phase]}"
                u = self.rng.uniform(0.05, 0.95)
                if phase == "training":
                    hung = next((r for r in results if r["scenario"].startswith("kill_training")
                                 and r["details"].get("recovery_timed_out")), None)
                    if hung is not None:  # the same folder: it would hang the same way, for the same time
                        log(f"{name}: not run ({hung['scenario']}'s recovery hung on the same folder)")
                        results.append({"scenario": name, "finished": False, "data_lost": None,
                                        "data_lost_before_recovery": None, "extra_paid_calls": None,
                                        "time_to_recover_s": None, "details": {
                                            "not_run": f"{hung['scenario']}'s recovery run hung (timed out after "
                                                       f"{self.args.train_timeout:.0f} s) on the same folders"}})
                        continue
                    if train_ws is None:
                        train_server = Endpoint(latency_s=self.args.latency).start()
                        train_ws = self.workspace("kill_training", train_server.url)
                    steps = self.args.train_steps + counts[phase] - 1  # new settings: the stages have work again
                    delay = u * self.args.train_window
                    results.append(self._kill(name, train_ws, train_server,
                                              after_line(re.compile(r"^training \w+ at rate"), delay),
                                              f"{delay:.1f} s after stage 1 started", ["--max-steps", str(steps)],
                                              fresh=counts[phase] == 1, training=True))
                else:
                    if phase == "ingestion":
                        k = self.rng.randrange(max(1, n_documents))
                        moment, when = after_document(k, u), f"{u:.2f} into document {k + 1} of {n_documents}"
                    else:
                        moment, when = into_synthesis(u, self.ref_run), f"{u:.2f} into synthesis"
                    with Endpoint(latency_s=self.args.latency) as server:
                        ws = self.workspace(name, server.url)
                        results.append(self._kill(name, ws, server, moment, when, self.skip_args(), fresh=True))
        finally:
            if train_server is not None:
                train_server.stop()
        return results

    def _kill(self, name: str, ws: Workspace, server: Endpoint, moment: Callable[[Started], float | None], when: str,
              args: list[str], *, fresh: bool, training: bool = False) -> dict:
        timeout = self.args.train_timeout if training else self.args.run_timeout
        before_calls = server.calls()["paid"]
        killed = run_clara(ws, args, timeout, f"{name} (kill {when})", kill_at=moment)
        time.sleep(1.0)  # let the kernel reap the group; what is alive now was left behind
        orphans = leftover_processes(ws.tag)
        orphan_commands = [_command(pid) for pid in orphans]
        before, before_details = differences(self.reference, ws.artifacts, present_only=fresh)
        recovery = run_clara(ws, args, timeout, f"{name} recovery")
        end_processes(leftover_processes(ws.tag))
        lost, details = differences(self.reference, ws.artifacts)
        extra: dict = {}
        if training:
            missing = training_outputs_missing(ws.artifacts, int(args[args.index("--max-steps") + 1]))
            lost += len(missing)
            if missing:
                details["training"] = missing
        paid = server.calls()["paid"] - before_calls
        if recovery.rc != self.expected_rc() or lost:
            extra["recovery_output_tail"] = tail(recovery, 8)
            extra["pool_slots_held_after"] = held_pool_slots(ws.home)
        return self.result(name, finished=recovery.rc == self.expected_rc(), lost=lost, lost_details=details,
                           paid_extra=paid - (self.ref_calls if fresh else 0), recover_s=recovery.wall_s,
                           before=before, before_details=before_details,
                           killed_at_s=None if killed.killed_at_s is None else round(killed.killed_at_s, 1),
                           phase_hit=killed.phase_hit if killed.killed_at_s is not None else f"ended first (exit {killed.rc})",
                           planned_moment=when, processes_left_alive=len(orphans),
                           left_alive=orphan_commands[:4], recovery_rc=recovery.rc,
                           recovery_timed_out=recovery.timed_out, recovery_tracebacks=tracebacks(recovery), **extra)

    def disk_full(self) -> dict:
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("disk_full", server.url)
            ws.artifacts.mkdir()
            mounted = _mount_tmpfs(ws.artifacts, self.args.tmpfs_small_kb)
            if mounted is not True:
                log(f"disk_full: tmpfs refused ({mounted}); RLIMIT_FSIZE instead")
                return self._disk_full_fsize(ws, server, str(mounted))
            try:
                # (a) a first run on a disk too small for it, then the disk grown
                small = run_clara(ws, self.skip_args(), self.args.run_timeout, f"disk_full (a) {self.args.tmpfs_small_kb} KB")
                torn, torn_details = differences(self.reference, ws.artifacts, present_only=True)
                leftovers_a = _temp_files(ws.artifacts)
                _mount_tmpfs(ws.artifacts, 64 * 1024, remount=True)
                grown = run_clara(ws, self.skip_args(), self.args.run_timeout, "disk_full (a) grown")
                lost_a, details_a = differences(self.reference, ws.artifacts)
                # (b) good artifacts, the disk filled up, a run, the disk freed
                filler = ws.artifacts / "filler.bin"
                _fill(ws.artifacts, filler, keep_bytes=self.args.disk_keep_kb * 1024)
                full = run_clara(ws, self.skip_args(), self.args.run_timeout, "disk_full (b) full")
                before_b, details_before_b = differences(self.reference, ws.artifacts)
                filler.unlink()
                freed = run_clara(ws, self.skip_args(), self.args.run_timeout, "disk_full (b) freed")
                lost_b, details_b = differences(self.reference, ws.artifacts)
                leftovers_b = _temp_files(ws.artifacts)
                paid = server.calls()["paid"]
            finally:
                _umount(ws.artifacts)
        says = lambda run: bool(re.search(r"No space left|Errno 28|ENOSPC|disk (is )?full", run.text, re.I))  # noqa: E731
        return self.result("disk_full", finished=grown.rc == self.expected_rc() and freed.rc == self.expected_rc(),
                           lost=lost_a + lost_b, lost_details={**details_a, **details_b},
                           paid_extra=paid - self.ref_calls, recover_s=grown.wall_s + freed.wall_s,
                           before=torn + before_b, before_details={**torn_details, **details_before_b},
                           method=f"tmpfs ({self.args.tmpfs_small_kb} KB for (a), then 64 MB; (b) filled to "
                                  f"{self.args.disk_keep_kb} KB free)",
                           too_small={"rc": small.rc, "says_disk_full": says(small), "tracebacks": tracebacks(small),
                                      "published_wrong_rows": torn, "temp_files_left": leftovers_a,
                                      "output_tail": tail(small, 4)},
                           filled={"rc": full.rc, "says_disk_full": says(full), "data_lost_while_full": before_b,
                                   "tracebacks": tracebacks(full), "output_tail": tail(full, 4)},
                           recovery_rc=[grown.rc, freed.rc], temp_files_left=leftovers_b)

    def _disk_full_fsize(self, ws: Workspace, server: Endpoint, why: str) -> dict:
        """Where tmpfs cannot be mounted: good artifacts, then a run whose files may not grow past 256 KB
        (RLIMIT_FSIZE: writes fail with EFBIG, Python ignores SIGXFSZ), then a normal run."""
        good = run_clara(ws, self.skip_args(), self.args.run_timeout, "disk_full (fsize) good")
        limit = 256 * 1024

        def cap() -> None:
            import resource
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        log("disk_full (fsize): a run with RLIMIT_FSIZE 256 KB")
        capped = start_clara(ws, self.skip_args(), preexec=cap).wait(self.args.run_timeout)
        save_output(ws, "disk_full fsize capped", capped)
        before, before_details = differences(self.reference, ws.artifacts)
        freed = run_clara(ws, self.skip_args(), self.args.run_timeout, "disk_full (fsize) freed")
        lost, details = differences(self.reference, ws.artifacts)
        return self.result("disk_full", finished=freed.rc == self.expected_rc(), lost=lost, lost_details=details,
                           paid_extra=server.calls()["paid"] - self.ref_calls, recover_s=freed.wall_s,
                           before=before, before_details=before_details,
                           method=f"RLIMIT_FSIZE 256 KB (EFBIG, not ENOSPC): tmpfs refused: {why}",
                           good_rc=good.rc, capped={"rc": capped.rc, "output_tail": tail(capped, 4)})

    def concurrent_runs(self) -> dict:
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("concurrent_runs", server.url)
            log("concurrent_runs: two clara run at once")
            first, second = start_clara(ws, self.skip_args()), start_clara(ws, self.skip_args())
            runs = [first.wait(self.args.run_timeout * 2), second.wait(self.args.run_timeout * 2)]
            save_output(ws, "concurrent first", runs[0])
            save_output(ws, "concurrent second", runs[1])
            log(f"concurrent_runs: exits {[r.rc for r in runs]} after {[round(r.wall_s, 1) for r in runs]} s")
            before, before_details = differences(self.reference, ws.artifacts)
            recovery = run_clara(ws, self.skip_args(), self.args.run_timeout, "concurrent_runs recovery")
            paid = server.calls()["paid"]
        lost, details = differences(self.reference, ws.artifacts)
        return self.result("concurrent_runs", finished=recovery.rc == self.expected_rc(), lost=lost,
                           lost_details=details, paid_extra=paid - self.ref_calls, recover_s=recovery.wall_s,
                           before=before, before_details=before_details,
                           concurrent={"rc": [r.rc for r in runs], "wall_s": [round(r.wall_s, 1) for r in runs],
                                       "tracebacks": [tracebacks(r) for r in runs],
                                       "output_tail": [tail(r, 3) for r in runs]},
                           recovery_rc=recovery.rc, recovery_tracebacks=tracebacks(recovery),
                           **({"recovery_output_tail": tail(recovery, 4)} if recovery.rc != self.expected_rc() else {}))

    def document_deleted_mid_run(self) -> dict:
        files = sorted(p.relative_to(self.corpus).as_posix() for p in self.corpus.rglob("*") if p.is_file())
        document = DELETED_DOCUMENT if DELETED_DOCUMENT in files else files[-1]
        reference, expected_rc, reference_paid = self.reference_without(document)
        assert self.ref_run is not None
        n_documents = len([line for _, line in self.ref_run.lines if _DOCUMENT_LINE.search(line)])
        # while document k+1 is ingested, before the deleted one (last in key order) has its turn
        moment = after_document(self.rng.randrange(1, max(2, n_documents - 1)), self.rng.uniform(0.1, 0.9))
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("document_deleted_mid_run", server.url)
            target = ws.raw / document
            deleted: list[float] = []

            def delete(started: Started) -> None:
                at = moment(started)
                if not deleted and at is not None and time.monotonic() - started.started >= at:
                    target.unlink()
                    deleted.append(time.monotonic() - started.started)
                    log(f"document_deleted_mid_run: deleted {document} at {deleted[0]:.1f} s "
                        f"({phase_at(list(started.lines))})")

            log("document_deleted_mid_run: clara run")
            during = start_clara(ws, self.skip_args()).wait(self.args.run_timeout, on_tick=delete)
            save_output(ws, "during deletion", during)
            if not deleted:  # the run ended first: the deletion is then between runs
                target.unlink()
            log(f"document_deleted_mid_run: exit {during.rc} after {during.wall_s:.1f} s")
            recovery = run_clara(ws, self.skip_args(), self.args.run_timeout, "document_deleted_mid_run recovery")
            paid = server.calls()["paid"]
        lost, details = differences(reference, ws.artifacts)
        return self.result("document_deleted_mid_run", finished=recovery.rc == expected_rc, lost=lost,
                           lost_details=details, paid_extra=paid - reference_paid, recover_s=recovery.wall_s,
                           deleted=document, deleted_at_s=round(deleted[0], 1) if deleted else None,
                           compared_with="a reference run over the corpus without the deleted document",
                           during={"rc": during.rc, "tracebacks": tracebacks(during), "output_tail": tail(during, 3)},
                           recovery_rc=recovery.rc, expected_rc=expected_rc)

    def hostile_files(self) -> dict:
        sys.path.insert(0, str(REPO))
        from tests.clara_pipeline.ingest.bombs import MB, docx_bomb, text_file

        canary = f"CANARY-{uuid.uuid4().hex}"
        outside = self.root / "outside"
        (outside / "folder").mkdir(parents=True)
        secret = outside / "secret.txt"
        secret.write_text("".join(f"{canary} line {i}: the service password is hunter{i}.\n" for i in range(200)))
        (outside / "folder" / "notes.md").write_text(f"# Notes\n\n{canary} is in this folder outside the raw data.\n" * 20)
        with Endpoint(latency_s=self.args.latency) as server:
            ws = self.workspace("hostile_files", server.url)
            hostile = {
                "leak_file.txt": lambda p: p.symlink_to(secret),
                "leak_folder": lambda p: p.symlink_to(outside / "folder", target_is_directory=True),
                "zero.txt": lambda p: p.symlink_to("/dev/zero"),
                "loop_a.md": lambda p: p.symlink_to(ws.raw / "loop_b.md"),
                "loop_b.md": lambda p: p.symlink_to(ws.raw / "loop_a.md"),
                "pipe.txt": lambda p: os.mkfifo(p),
                "bomb.docx": lambda p: docx_bomb(p, self.args.bomb_mb * MB),
                "huge.txt": lambda p: text_file(p, self.args.huge_text_mb * MB),
            }
            log(f"hostile_files: building {', '.join(hostile)} (bomb {self.args.bomb_mb} MB of XML, "
                f"text {self.args.huge_text_mb} MB)")
            for name, make in hostile.items():
                make(ws.raw / name)
            run = run_clara(ws, self.skip_args(), self.args.hostile_timeout, "hostile_files")
            calls = server.calls()
            end_processes(leftover_processes(ws.tag))
        lost, details = differences(self.reference, ws.artifacts)
        hits = canary_hits(canary.encode(), ws.artifacts, ws.home)
        in_output = canary in run.text
        named = {name: any(name in line for _, line in run.lines) for name in hostile}
        good = len(re.findall(r"^\s+ok\s", run.text, re.M))
        assert self.ref_run is not None
        good_expected = len(re.findall(r"^\s+ok\s", self.ref_run.text, re.M))
        finished = run.rc is not None and run.rc >= 0 and all(named.values()) and good == good_expected
        shutil.rmtree(outside)
        return self.result("hostile_files", finished=finished, lost=lost + len(hits) + int(in_output),
                           lost_details=details, paid_extra=calls["paid"] - self.ref_calls, recover_s=run.wall_s,
                           rc=run.rc, timed_out=run.timed_out, canary_found_in=hits, canary_in_output=in_output,
                           named_in_output=named, documents_ok=good, documents_ok_expected=good_expected,
                           tracebacks=tracebacks(run), bomb_inflated_mb=self.args.bomb_mb,
                           huge_text_mb=self.args.huge_text_mb,
                           lines_about_hostile=[line[:200] for _, line in run.lines
                                                if any(name in line for name in hostile)][:12])


def training_outputs_missing(artifacts: Path, steps: int) -> list[str]:
    """What a finished training run at rate 32 must have left: each stage's current.json naming an existing
    checkpoint trained for `steps` steps, and the evaluation report."""
    missing = []
    for stage in ("pretrain", "instruct", "e2e"):
        current = artifacts / "training" / "rate-32" / stage / "current.json"
        try:
            record = json.loads(current.read_text())
            checkpoint = current.parent / record["checkpoint"]
            launch = json.loads((current.parent / record["run"] / "launch.json").read_text())
        except (OSError, ValueError, KeyError) as exc:
            missing.append(f"{stage}: current.json or its run unreadable ({exc})")
            continue
        if not checkpoint.is_dir() or not any(checkpoint.iterdir()):
            missing.append(f"{stage}: checkpoint {record['checkpoint']} missing or empty")
        if launch.get("max_steps") not in (None, steps):
            missing.append(f"{stage}: current checkpoint trained {launch.get('max_steps')} steps, expected {steps}")
    if not (artifacts / "evaluation" / "rate-32" / "report.json").exists():
        missing.append("evaluation/rate-32/report.json missing")
    return missing


def held_pool_slots(home: Path) -> list[str]:
    """The pool slots the instance in `home` counts as held, with their runs' status (SQLite storage)."""
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(f"file:{home / 'history' / 'runs' / 'index.db'}?mode=ro", uri=True)) as con:
            slots = con.execute("SELECT concurrency_key, run_id, step_key FROM concurrency_slots "
                                "WHERE run_id IS NOT NULL").fetchall()
        with closing(sqlite3.connect(f"file:{home / 'history' / 'runs.db'}?mode=ro", uri=True)) as con:
            status = dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.Error as exc:
        return [f"instance unreadable: {exc}"]
    return [f"pool {key}: a slot held by run {run_id[:8]} ({status.get(run_id, 'unknown')}), step {step}"
            for key, run_id, step in slots]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:160]
    except OSError:
        return f"pid {pid} (gone)"


def _mount_tmpfs(path: Path, size_kb: int, *, remount: bool = False) -> bool | str:
    options = f"{'remount,' if remount else ''}size={size_kb}k"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    return True if done.returncode == 0 else (done.stderr.strip() or f"mount exited {done.returncode}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(folder: Path, filler: Path, *, keep_bytes: int) -> None:
    """Writes `filler` until the filesystem of `folder` has `keep_bytes` free."""
    free = shutil.disk_usage(folder).free
    with open(filler, "wb") as f:
        remaining = max(0, free - keep_bytes)
        while remaining > 0:
            n = min(remaining, 1 << 20)
            try:
                f.write(b"\0" * n)
                f.flush()
            except OSError:
                break
            remaining -= n


def _temp_files(folder: Path) -> list[str]:
    """Files a write left behind: temporary siblings and staging folders (names relative to `folder`)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "publish.lock"  # the staging area's lock: there by design
                  and (p.name.endswith(".tmp") or "staging" in p.relative_to(folder).as_posix()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 kills (no training), small bombs: a few minutes")
    parser.add_argument("--only", default="", help=f"comma-separated scenarios, of {', '.join(SCENARIOS)}")
    parser.add_argument("--kills", type=int, help="SIGKILL moments (default 10, --quick 2)")
    parser.add_argument("--no-training", action="store_true", help="no kill lands in training")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", default=str(REPO / "raw_data"))
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per loopback answer")
    parser.add_argument("--train-steps", type=int, default=4, help="--max-steps of the training kills (first)")
    parser.add_argument("--train-window", type=float, default=40.0,
                        help="a training kill lands up to this many seconds after stage 1 starts")
    parser.add_argument("--run-timeout", type=float, default=300.0)
    parser.add_argument("--train-timeout", type=float, default=480.0,
                        help="a training run's time limit (a normal one takes 3-5 min on 2 busy cores)")
    parser.add_argument("--hostile-timeout", type=float, default=300.0)
    parser.add_argument("--tmpfs-small-kb", type=int, default=3072, help="the too-small disk of disk_full (a)")
    parser.add_argument("--disk-keep-kb", type=int, default=256, help="free space left on the filled disk")
    parser.add_argument("--bomb-mb", type=int, help="XML the DOCX bomb inflates to (default 1024, --quick 100)")
    parser.add_argument("--huge-text-mb", type=int, help="size of the huge .txt (default 200, --quick 40)")
    parser.add_argument("--keep", help="keep the scenario folders here instead of a temporary folder")
    args = parser.parse_args()
    args.kills = args.kills if args.kills is not None else (2 if args.quick else 10)
    args.no_training = args.no_training or args.quick
    args.bomb_mb = args.bomb_mb or (100 if args.quick else 1024)
    args.huge_text_mb = args.huge_text_mb or (40 if args.quick else 200)
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = sorted(set(only) - set(SCENARIOS))
    if unknown:
        parser.error(f"--only: unknown scenario(s) {unknown}; expected some of {SCENARIOS}")

    started = time.monotonic()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="clara-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    suite = Suite(args, root)
    scenarios: list[dict] = []
    try:
        suite.run_reference()
        assert suite.ref_run is not None
        for name in SCENARIOS:
            if name not in only:
                continue
            try:
                outcome = getattr(suite, name)()
            except Exception as exc:  # a scenario that cannot run is a row that says so, not a lost suite
                log(f"{name}: the scenario itself failed: {exc!r}")
                outcome = {"scenario": name, "finished": False, "data_lost": None, "data_lost_before_recovery": None,
                           "extra_paid_calls": None, "time_to_recover_s": None,
                           "details": {"error": f"{type(exc).__name__}: {exc}"}}
            scenarios.extend(outcome if isinstance(outcome, list) else [outcome])
    finally:
        for mount in root.glob("*/artifacts"):
            if os.path.ismount(mount):
                _umount(mount)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    ref = suite.ref_run
    print(json.dumps({
        "benchmark": "faults",
        "command": "python bench/faults.py " + " ".join(sys.argv[1:]),
        "corpus": str(args.corpus),
        "reference": {"rc": ref.rc, "wall_s": round(ref.wall_s, 1), "paid_calls": suite.ref_calls,
                      "files": {name: len(data.splitlines()) for name, data in suite.reference.items()},
                      "phase_start_s": {k: round(v, 1) for k, v in ref.phase_times().items()}},
        "scenarios": scenarios,
        "all_finished": all(s["finished"] for s in scenarios),
        "total_data_lost": sum(s["data_lost"] or 0 for s in scenarios),
        "all_data_lost_zero": all(s["data_lost"] == 0 for s in scenarios),
        "total_wall_s": round(time.monotonic() - started, 1),
    }, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
