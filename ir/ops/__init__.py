"""Op declarations, one file per family; importing this package registers them all."""
from . import (collective, conv, elementwise, indexing, kernel, linalg, movement,  # noqa: F401
               reduce, scan, source)
