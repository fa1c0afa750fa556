"""coldstart: the time from container start to a ready server.

Owns the weight prefetch that runs beside provisioning (`prefetch`; its status file and the
download's bytes in the cache are in `progress`), the download's disk check made from the
repo's file list (`preflight`), the server's load phases read from its log (`phases`) with
the stall watchdog, and the server's wait for the download (`gate`). The hub itself is on
the shared floor (`hub`, `hub_cache`, `repo_files`), where the plan reaches it too.

May import: the shared top level (settings, errors, files, logs, markers, redact, values,
host_limits, hub, hub_cache, repo_files) and, from the plan, only `prepare.prepare_plan`
(the prefetch plans to learn the model and revision the server will get). The plan imports
nothing of it: the arrow runs one way.

Other capabilities use it through one documented function each:

- boot: `prefetch.start_background` (the entrypoint) and `prefetch.run_foreground`
  (`provision`);
- supervise: `gate.wait_for_weights` (before the first plan; it plans again and stops a
  download of a model the server will not serve), `gate.stop_download` (on every stop of
  `run`) and `phases.PhaseTracker` (fed with the server's lines by `server_output`).

``huggingface_hub`` is imported only inside the functions that talk to the hub, so importing
this package stays cheap.
"""
