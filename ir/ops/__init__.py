"""Op declarations, one file per family; importing this package registers them all."""
from . import elementwise, kernel, linalg, movement, reduce, source  # noqa: F401
