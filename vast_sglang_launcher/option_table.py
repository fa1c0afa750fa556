"""The image build step: `python -m vast_sglang_launcher.option_table --output FILE`.

The Dockerfile runs it with SGLang's own Python, where the launcher's dependencies are absent,
so this path and everything it imports use the standard library only. The code lives in
`plan/option_table.py`; this name stays because images built from older Dockerfiles call it.
"""

from __future__ import annotations

import sys

from .plan.option_table import main

if __name__ == "__main__":
    sys.exit(main())
