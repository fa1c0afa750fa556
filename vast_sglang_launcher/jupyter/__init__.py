"""jupyter: JupyterLab behind the auth edge, as Vast's images run it.

Owns the pure part (`server_args`: which `PORTAL_CONFIG` entry publishes Jupyter, Jupyter's
command line and environment, and the kernelspec that runs SGLang's Python) and the `jupyter`
command that supervisord runs (`program`: wait for provisioning, write the kernelspec, run
Jupyter in the foreground with its output in `jupyter.log` and the container log, and leave
no kernel or terminal behind when it stops), and jupyter's settings part (`knobs`).

May import: the shared top level (settings, errors, files, logs, markers, rotating_log); from
the edge, only `portal.portal_entries`; from boot, only `packages.pip_python` (the Python that
runs SGLang); from supervise, only `provisioning_gate.wait_until_gone` and
`process.set_child_subreaper`. Other capabilities use it only through
`program.command_jupyter` (the CLI).
"""
