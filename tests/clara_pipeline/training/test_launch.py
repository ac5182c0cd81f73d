"""The launcher's pure parts: the launch spec, the trainer command for each setup, the trainer's environment, and
the process-group handling (with a scripted child process standing in for a rank that spawns its own worker)."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from clara_pipeline.training.launch import (
    LaunchError,
    LaunchSpec,
    Reporter,
    build_command,
    collect_result,
    launch,
    run_trainer,
    trainer_arguments,
    trainer_environment,
)

PY = "/venv/bin/python"


def spec(**overrides):
    settings = dict(stage="pretrain", data=("d/pretrain.jsonl",), output_dir="out/run", compression_rate=32,
                    max_steps=30)
    settings.update(overrides)
    return LaunchSpec(**settings)


def test_one_cpu_process_runs_the_trainer_module_directly():
    command = build_command(spec(overrides=("model.base_model=tiny",), config_file="c/pretrain.yaml"), PY)
    assert command == [PY, "-m", "clara_model.train", "--stage", "pretrain", "--data", "d/pretrain.jsonl",
                       "--output", "out/run", "--config", "c/pretrain.yaml", "--set", "model.compression_rate=32",
                       "--set", "model.base_model=tiny", "--max-steps", "30"]


def test_two_cpu_processes_go_through_deepspeed_over_gloo():
    command = build_command(spec(cpu_processes=2, master_port=29577, resume=False), PY)
    assert command[:9] == [PY, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", "29577",
                           "--module", "clara_model.train"]
    assert command[-1] == "--no-resume"


def test_gpus_go_through_deepspeed():
    command = build_command(spec(num_gpus=8, cpu_processes=4), PY)  # cpu_processes only matters without GPUs
    assert command[3:7] == ["--num_gpus", "8", "--module", "clara_model.train"]


def test_a_hostfile_makes_a_multi_node_deepspeed_job():
    command = build_command(spec(num_gpus=8, num_nodes=2, hostfile="/etc/clara/hostfile"), PY)
    assert command[3:11] == ["--hostfile", "/etc/clara/hostfile", "--num_nodes", "2", "--num_gpus", "8",
                             "--module", "clara_model.train"]


def test_later_stages_pass_their_checkpoint_and_no_architecture():
    command = build_command(spec(stage="e2e", init_from="runs/x/final", data=("a.jsonl", "b.jsonl")), PY)
    assert command[command.index("--init-from") + 1] == "runs/x/final"
    assert command.count("--data") == 2
    assert not any(arg.startswith("model.compression_rate") for arg in command)


@pytest.mark.parametrize("settings, message", [
    (dict(stage="finetune"), "stage must be one of"),
    (dict(data=()), "at least one JSONL"),
    (dict(init_from="x/final"), "starts from the base model"),
    (dict(stage="instruct"), "previous stage's checkpoint"),
    (dict(num_nodes=2), "needs a hostfile"),
    (dict(cpu_processes=0), "cpu_processes"),
    (dict(max_steps=-1), "max_steps"),
    (dict(overrides=("lr",)), "key=value"),
])
def test_contradictions_are_refused_naming_the_field(settings, message):
    with pytest.raises(ValueError, match=message):
        spec(**settings)


def test_spec_round_trips_through_pipes_extras_and_refuses_unknown_keys():
    original = spec(overrides=("a=1",), hostfile="h", num_gpus=4)
    assert LaunchSpec.from_dict(original.to_dict()) == original
    with pytest.raises(ValueError, match="unknown launch settings"):
        LaunchSpec.from_dict({**original.to_dict(), "num_gpu": 1})


def test_the_trainer_never_sees_the_pipes_variables():
    env = trainer_environment({"PATH": "/bin", "DAGSTER_PIPES_CONTEXT": "x", "DAGSTER_PIPES_MESSAGES": "y",
                               "DAGSTER_HOME": "/h"}, master_port=29600)
    assert env == {"PATH": "/bin", "DAGSTER_HOME": "/h", "PYTHONUNBUFFERED": "1", "MASTER_PORT": "29600"}


# -- process handling, with a scripted child ---------------------------------------------------------------------

# Writes a metrics line per step and starts a grandchild in its own (inherited) process group, as a DeepSpeed
# launcher starts its ranks; ignores nothing, so SIGTERM to the group ends both.
CHILD = textwrap.dedent("""
    import json, os, subprocess, sys, time
    out = sys.argv[1]
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(os.path.join(out, "pids"), "w").write(f"{os.getpid()} {worker.pid}")
    steps = int(sys.argv[2])
    for step in range(1, steps + 1):
        with open(os.path.join(out, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"step": step, "loss": 10.0 / step}) + "\\n")
        time.sleep(0.05)
    print("Traceback (most recent call last):", file=sys.stderr)
    print("clara_model.train: error: ValueError: something the trainer could not handle", file=sys.stderr)
    print("[launcher] rank 0 exited", file=sys.stderr)
    worker.kill()
    sys.exit(int(sys.argv[3]))
""")


def scripted(tmp_path, steps, code):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(tmp_path), str(steps), str(code)]


def collecting_reporter():
    lines, progress = [], []
    return Reporter(info=lines.append, error=lines.append, progress=progress.append), lines, progress


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie waiting for its parent is gone for our purpose
        return f.read().split(")")[-1].split()[0] != "Z"


def test_metrics_are_relayed_every_n_steps_and_stderr_is_kept(tmp_path):
    reporter, lines, progress = collecting_reporter()
    run = run_trainer(spec(output_dir=str(tmp_path), relay_every=10, max_steps=25), scripted(tmp_path, 25, 4),
                      reporter, poll_s=0.05)
    assert run.returncode == 4 and run.signal_received is None
    assert [r["step"] for r in progress] == [1, 10, 20, 25]
    assert lines[0].startswith("step 1/25 loss 10.0000")
    assert run.stderr_tail[-2:] == ["clara_model.train: error: ValueError: something the trainer could not handle",
                                    "[launcher] rank 0 exited"]
    with pytest.raises(LaunchError, match="exited with 4: ValueError: something the trainer could not handle$"):
        collect_result(spec(output_dir=str(tmp_path)), run)


@pytest.mark.parametrize("echo", [True, False])
def test_the_trainers_output_goes_to_train_log_and_to_stderr_unless_echo_is_off(tmp_path, capfd, echo):
    reporter, _, _ = collecting_reporter()
    run_trainer(spec(output_dir=str(tmp_path), echo=echo), scripted(tmp_path, 3, 0), reporter, poll_s=0.05)
    run_trainer(spec(output_dir=str(tmp_path), echo=echo), scripted(tmp_path, 3, 0), reporter, poll_s=0.05)
    log = (tmp_path / "train.log").read_text()
    assert log.count("clara_model.train: error: ValueError") == 2  # a relaunch appends
    assert ("clara_model.train: error: ValueError" in capfd.readouterr().err) is echo


def test_sigterm_reaches_the_whole_process_group(tmp_path):
    reporter, lines, _ = collecting_reporter()
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    before = signal.getsignal(signal.SIGTERM)
    run = run_trainer(spec(output_dir=str(tmp_path)), scripted(tmp_path, 10_000, 0), reporter, poll_s=0.05)
    assert run.signal_received == signal.SIGTERM and run.returncode == -signal.SIGTERM
    child, worker = map(int, (tmp_path / "pids").read_text().split())
    time.sleep(0.2)
    assert not alive(child) and not alive(worker)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    assert any("SIGTERM received" in line for line in lines)
    with pytest.raises(LaunchError, match="stopped by SIGTERM"):
        collect_result(spec(output_dir=str(tmp_path)), run)


def test_a_launcher_started_with_sigint_ignored_still_stops_the_trainer(tmp_path):
    """A process started in the background inherits SIGINT ignored, and an ignored signal stays ignored across
    exec: the launcher must start the trainer with the default action, or a cancellation waits for SIGKILL."""
    reporter, _, _ = collecting_reporter()
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        run = run_trainer(spec(output_dir=str(tmp_path)), scripted(tmp_path, 10_000, 0), reporter, poll_s=0.05,
                          grace_s=30)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN  # restored
    finally:
        signal.signal(signal.SIGINT, before)
    assert run.signal_received == signal.SIGINT
    assert run.returncode == -signal.SIGINT and run.wall_s < 30  # Python's KeyboardInterrupt, not the SIGKILL


def test_a_child_that_ignores_the_signal_is_killed_after_the_grace_period(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                      "open(__import__('sys').argv[1], 'w').write('up')\ntime.sleep(600)\n")
    flag = tmp_path / "up"
    reporter, lines, _ = collecting_reporter()

    def stop_when_up():
        while not flag.exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_when_up, daemon=True).start()
    run = run_trainer(spec(output_dir=str(tmp_path)), [sys.executable, str(script), str(flag)], reporter,
                      poll_s=0.05, grace_s=0.5)
    assert run.returncode == -signal.SIGKILL
    assert any("did not stop within" in line for line in lines)


def test_launch_refuses_missing_inputs_and_leaves_the_reason_in_the_run_folder(tmp_path):
    reporter, _, _ = collecting_reporter()
    out = tmp_path / "run"
    with pytest.raises(LaunchError, match="data file"):
        launch(spec(output_dir=str(out), data=(str(tmp_path / "nope.jsonl"),)), reporter)
    assert "data file(s) not found" in (out / "launch_failed.txt").read_text()

    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    checkpoint = tmp_path / "stage1" / "final"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text('{"clara": {"model": {"compression_rate": 16}}}')
    with pytest.raises(LaunchError, match="trained at compression rate 16"):
        launch(spec(stage="instruct", output_dir=str(out), data=(str(data),), init_from=str(checkpoint)), reporter)


def test_standalone_command_line_reports_a_bad_setting_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "clara_pipeline.training.launch", "--stage", "instruct",
                             "--data", "x.jsonl", "--output", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert "init_from: stage instruct starts from the previous stage's checkpoint" in result.stderr


# -- the DeepSpeed op a CPU job builds on its first run -------------------------------------------------------------


def test_the_cpu_op_build_is_announced_until_it_is_in_the_extensions_cache(tmp_path):
    from clara_pipeline.training.ops import CPU_OP, pending_op_build

    env = {"TORCH_EXTENSIONS_DIR": str(tmp_path)}
    build = pending_op_build(0, env)
    assert build.directory == tmp_path / CPU_OP
    assert build.notice == f"building DeepSpeed's {CPU_OP} C++ op once (about a minute; cached in {tmp_path})"
    assert pending_op_build(8, env) is None  # DeepSpeed's CUDA accelerator builds nothing for this trainer
    build.directory.mkdir()
    (build.directory / f"{CPU_OP}.so").write_bytes(b"")
    assert pending_op_build(0, env) is None


def test_the_default_extensions_cache_is_torchs(tmp_path):
    from clara_pipeline.training.ops import extensions_root

    root = extensions_root({"XDG_CACHE_HOME": str(tmp_path)})
    assert root.parent == tmp_path / "torch_extensions"
    # py311_cpu for the CPU wheel, py311_cu128 for a CUDA build (torch names the folder by its build, not the GPU)
    assert re.fullmatch(f"py{sys.version_info.major}{sys.version_info.minor}_(cpu|cu[0-9]+|rocm[0-9]+)", root.name)


def test_launch_without_a_compiler_refuses_before_starting_the_trainer(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "extensions"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no c++, no ninja
    monkeypatch.delenv("CXX", raising=False)
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    reporter, lines, _ = collecting_reporter()
    with pytest.raises(LaunchError, match=r"deepspeed_shm_comm C\+\+ op, built once into .*extensions.* lacks "
                                          r"a C\+\+ compiler \('c\+\+' is not on PATH; install g\+\+ or set CXX\) "
                                          r"and ninja"):
        launch(spec(output_dir=str(tmp_path / "run"), data=(str(data),)), reporter)
    assert not (tmp_path / "run" / "train.log").exists() and lines == []


# -- one home for the launch settings -------------------------------------------------------------------------------


def test_the_trainer_command_line_round_trips_through_the_trainers_parser():
    from clara_model.train import parse_args

    original = spec(stage="e2e", init_from="runs/x/final", data=("a.jsonl", "b.jsonl"), config_file="c.yaml",
                    overrides=("optim.lr=1e-4",), resume=False)
    args, local_rank = parse_args(trainer_arguments(original))
    assert args == original.trainer_args() and local_rank is None
    assert (args.stage, args.data, args.output, args.init_from, args.config, args.max_steps, args.resume) == (
        "e2e", ("a.jsonl", "b.jsonl"), "out/run", "runs/x/final", "c.yaml", 30, False)


def test_the_standalone_options_are_the_trainers_and_the_launch_settings():
    import argparse

    from clara_model.contract import TrainerArgs
    from clara_pipeline.training.launch.spec import add_launch_arguments, spec_from_arguments

    parser = argparse.ArgumentParser()
    add_launch_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    trainer = argparse.ArgumentParser()
    TrainerArgs.add_arguments(trainer)
    assert {o for a in trainer._actions for o in a.option_strings} <= flags
    assert {"--compression-rate", "--num-gpus", "--num-nodes", "--hostfile", "--cpu-processes", "--master-port",
            "--relay-every"} <= flags
    args = parser.parse_args(["--stage", "pretrain", "--data", "d/pretrain.jsonl", "--output", "out/run",
                              "--compression-rate", "32", "--max-steps", "30", "--num-gpus", "2", "--no-resume"])
    assert spec_from_arguments(args) == spec(num_gpus=2, resume=False)
    assert spec_from_arguments(parser.parse_args(["--stage", "pretrain", "--data", "x", "--output", "o"])) == \
        LaunchSpec(stage="pretrain", data=("x",), output_dir="o")  # every default is LaunchSpec's


def test_the_launchpad_config_is_generated_from_the_launch_settings():
    from clara_pipeline.defs.training import TrainStageConfig
    from clara_pipeline.training.launch import RUN_OPTIONS, launch_settings

    fields = TrainStageConfig.model_fields
    assert set(fields) == {*RUN_OPTIONS, "overrides"}
    for name, (kind, default, text) in launch_settings().items():
        assert fields[name].description == text or name == "max_steps"
        assert fields[name].default == default or (name, fields[name].default) == ("max_steps", 30)
    config = TrainStageConfig(num_gpus=8, hostfile="", overrides=["optim.lr=1e-4"])
    options = config.launch_options()
    assert options == {"max_steps": 30, "num_gpus": 8, "num_nodes": 0, "hostfile": None, "cpu_processes": 1,
                       "resume": True, "master_port": 0, "relay_every": 10}
    assert LaunchSpec(stage="pretrain", data=("d",), output_dir="o", **options).num_gpus == 8


def test_the_trainer_does_not_outlive_a_launcher_killed_with_sigkill(tmp_path):
    """The trainer has a process group of its own (a signal must reach all of it), which a SIGKILL of the
    launcher's group does not reach and no `finally` can forward: it must die with its parent all the same, or it
    goes on writing into the run folder the next run resumes from."""
    import subprocess

    code = ("import sys\nfrom pathlib import Path\n"
            "from tests.clara_pipeline.training.test_launch import collecting_reporter, scripted, spec\n"
            "from clara_pipeline.training.launch.supervise import run_trainer\n"
            f"tmp = Path({str(tmp_path)!r})\n"
            "run_trainer(spec(output_dir=str(tmp)), scripted(tmp, 10_000, 0), collecting_reporter()[0], poll_s=0.05)\n")
    launcher = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
    pids = tmp_path / "pids"
    deadline = time.monotonic() + 60
    while not pids.exists() or len(pids.read_text().split()) < 2:
        assert time.monotonic() < deadline and launcher.poll() is None, "the scripted trainer did not start"
        time.sleep(0.05)
    child, _ = map(int, pids.read_text().split())
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
