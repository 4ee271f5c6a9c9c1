"""``python -m firmware_config`` runs the ``rapp-firmware`` CLI."""

import sys

from firmware_config.cli import main

sys.exit(main())
