"""``python -m vast_sglang_launcher``."""

import sys

from .cli import main

sys.exit(main())
