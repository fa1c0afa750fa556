"""coldstart: the time from container start to a ready server.

Owns the model hub (`hub`: the one way to the hub, through `huggingface_hub`), which files of
a repo SGLang loads (`select`), the weight prefetch that runs beside provisioning
(`prefetch`; its status file and the record of complete downloads are in `progress`), the
checks made from the repo's file list before anything is downloaded (`preflight`), the JIT
and compile caches kept on the workspace (`caches`), the server's load phases read from its
log (`phases`) with the stall watchdog, and the server's wait for the download (`gate`).

May import: the shared top level (settings, errors, files, logs, markers, redact, values)
and, from the plan, only `prepare.prepare_plan` and the `build.LaunchPlan` it returns.

Other capabilities use it through one documented function each:

- plan: `hub.fetch_config` (model info, with its `HubAccess`), `preflight.plan_warnings` (GPU
  memory and shared memory warnings, with `shm_bytes`) and `caches.cache_env` (the caches'
  variables in the server's env);
- boot: `prefetch.start_background` (the entrypoint) and `prefetch.run_foreground`
  (`provision`);
- supervise: `gate.wait_for_weights` (before the first plan; it plans again and stops a
  download of a model the server will not serve), `gate.stop_download` (on every stop of
  `run`) and `phases.PhaseTracker` (fed with the server's lines by `server_output`).

``huggingface_hub`` is imported only inside the functions that talk to the hub, so importing
this package stays cheap.
"""
