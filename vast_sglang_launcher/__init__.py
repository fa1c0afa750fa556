"""In-container launcher daemon for an SGLang image on rented GPU machines.

Capabilities, one subpackage each, imported only by `cli` (and through one documented
function by each other): `plan` (environment -> LaunchPlan), `boot` (entrypoint, installs,
provisioning), `supervise` (run, probe, restart, stop, status) and `edge` (the auth proxy).
The modules at this level are what all of them share: `settings`, `logs`, `errors`, `files`,
`markers`, `redact`, `words`, plus `cli` / `__main__` and the image's `option_table` step.
"""

__version__ = "0.1.0"
