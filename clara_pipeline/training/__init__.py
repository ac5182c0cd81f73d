"""Training, orchestration side. Pure domain code: no Dagster import, torch only inside `probe.probe_checkpoint`.

- `launch`: the Pipes child (`python -m clara_pipeline.training.launch`) that runs one DeepSpeed job: `spec`
  (the launch settings, the command), `supervise` (the process group), `report` (the materialization);
- `ops`: the DeepSpeed C++ op a CPU job builds on its first run;
- `watch`: a stage's start and its steps, printed from the run folders as they grow (`clara run`);
- `stages`: the three stages, their versions, and the plan of one run;
- `runs`: run folders, fingerprints, checkpoint digests, the current run of a stage;
- `metrics`: tailing the trainer's metrics.jsonl, the loss-fell validator;
- `plots`: loss curves as PNG;
- `probe`: does a checkpoint load and compute.

`clara_pipeline.defs.training` wraps these into assets, checks and jobs. (Nothing is re-exported here, so that
`python -m clara_pipeline.training.launch` does not import its own module twice.)
"""
