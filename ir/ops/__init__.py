"""Op declarations, one file per family; importing this package registers them all."""
from . import (conv, elementwise, indexing, kernel, linalg, movement, reduce, scan,  # noqa: F401
               source)
