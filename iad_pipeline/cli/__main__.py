"""``python -m iad_pipeline.cli``: the ``iad`` command."""

import sys

from iad_pipeline.cli import main

sys.exit(main())
