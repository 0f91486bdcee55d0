"""``python -m app.cli`` is ``netgrow`` (for environments without the console script)."""
import sys

from app.cli import main

sys.exit(main())
