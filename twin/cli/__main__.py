"""python -m twin.cli: the `twin` command (how a Ray job and the tests run it)."""

import sys

from twin.cli import main

sys.exit(main())
