"""plan: from the environment to one LaunchPlan, without starting anything.

Owns SGLang's option tables and the argparse-faithful reading of the user's words
(`options`, `option_table`, `user_args`), the options the launcher uses, named by their
strings (`known_options`), which table to read with (`table_choice`, `installed`,
`versions`) and the drift check of tables (`drift_check`), what `sglang serve` itself reads
by release (`serve_cli`), GPU discovery through NVML (`gpus`), the model's config
(`model_info`), multi-node ranks from LeaderWorkerSet or SLURM (`ranks`), the pure
planning function (`build`: the user's words are scanned once, and the `LaunchPlan` carries
what the rest needs: argv, env, revision, tp, pp) with its DP-attention rules
(`dp_attention`) and the JIT caches' variables (`caches`), whether the model fits the GPUs
and `/dev/shm` (`fit`), the I/O around them (`prepare`) and the `plan` command (`command`).

May import: the shared top level only (settings, errors, files, words, values, host_limits,
units, and the hub: `hub`, `hub_cache`, `repo_files`); no other capability. Others use it
only through `prepare.prepare_plan` and the `build.LaunchPlan` it returns (supervise also
`versions.at_least`).

This `__init__` imports nothing: `option_table` must stay importable by SGLang's own Python,
which has none of the launcher's dependencies.
"""
