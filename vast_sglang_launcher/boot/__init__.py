"""boot: what runs before the server: the container's entrypoint and its boot steps.

Owns the hotfix and first-boot steps (`first_boot`), apt and pip installs (`packages`),
fetching and running user scripts (`scripts`, `tee`), the provisioning script
(`provisioning`), signal handling while they run (`interrupts`), step results (`steps`),
the `entrypoint` command that ends by exec'ing supervisord (`entrypoint`), the environment
the image's supervisord configuration expands (`supervisord_env`) and boot's settings part
(`knobs`).

May import: the shared top level (settings, errors, files, logs, markers, redact, words,
rotating_log); from the edge, only `portal.default_portal_config` (PORTAL_CONFIG's default
in every service's environment); from coldstart, only
`prefetch.start_background` (the entrypoint) and `prefetch.run_foreground` (`provision`).
"""
