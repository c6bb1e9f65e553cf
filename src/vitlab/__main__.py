"""``python -m vitlab`` runs the ``vitlab`` command (also what torchrun launches: ``torchrun -m vitlab train``)."""
import sys

from .cli import main

sys.exit(main())
