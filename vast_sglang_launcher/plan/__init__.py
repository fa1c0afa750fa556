"""plan: from the environment to one LaunchPlan, without starting anything.

Owns SGLang's option tables and the argparse-faithful reading of the user's words
(`options`, `option_table`, `user_args`), the options the launcher uses, named by their
strings (`known_options`), which table to read with (`table_choice`, `installed`,
`versions`) and the drift check of tables (`drift_check`), what `sglang serve` itself reads
by release (`serve_cli`), GPU discovery through NVML (`gpus`), the model's config
(`model_info`), multi-node ranks from LeaderWorkerSet or SLURM (`ranks`), the pure
planning function (`build`) with its DP-attention rules (`dp_attention`), the I/O around
it (`prepare`) and the `plan` command (`command`).

May import: the shared top level (settings, errors, files, words) and, from coldstart, only
`hub.fetch_config` (config.json), `caches.cache_env` (the server's cache variables) and
`preflight.plan_warnings` (GPU memory and shared memory). Other capabilities use it only
through `prepare.prepare_plan` and the `build.LaunchPlan` it returns.

This `__init__` imports nothing: `option_table` must stay importable by SGLang's own Python,
which has none of the launcher's dependencies.
"""
