"""`kiln.nn.parallel`: `DistributedDataParallel` (data parallelism over kiln.distributed)."""
from .distributed import DistributedDataParallel, consume_prefix_in_state_dict_if_present
from .traced import DDPJitWarning

__all__ = ["DDPJitWarning", "DistributedDataParallel", "consume_prefix_in_state_dict_if_present"]
