"""`kiln.nn.parallel`: `DistributedDataParallel` (data parallelism over kiln.distributed)."""
from .distributed import DistributedDataParallel, consume_prefix_in_state_dict_if_present

__all__ = ["DistributedDataParallel", "consume_prefix_in_state_dict_if_present"]
