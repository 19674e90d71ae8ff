"""`kiln.utils.data`: datasets, samplers and the `DataLoader`, as in `torch.utils.data`.

    >>> import kiln
    >>> from kiln.utils.data import DataLoader, TensorDataset
    >>> x, y = kiln.arange(8.0).reshape(4, 2), kiln.tensor([0, 1, 0, 1])
    >>> for xb, yb in DataLoader(TensorDataset(x, y), batch_size=2):
    ...     print(list(xb.shape), yb.tolist())
    [2, 2] [0, 1]
    [2, 2] [0, 1]
"""
from kiln.utils.data.dataloader import (DataLoader, WorkerInfo, default_collate,
                                       default_convert, get_worker_info)
from kiln.utils.data.dataset import ConcatDataset, Dataset, Subset, TensorDataset, random_split
from kiln.utils.data.generator import Generator
from kiln.utils.data.sampler import (BatchSampler, RandomSampler, Sampler, SequentialSampler,
                                    SubsetRandomSampler, WeightedRandomSampler)
from kiln.utils.data.distributed import DistributedSampler

__all__ = ["BatchSampler", "ConcatDataset", "DataLoader", "Dataset", "DistributedSampler",
           "Generator",
           "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
           "TensorDataset",
           "WeightedRandomSampler", "WorkerInfo", "default_collate", "default_convert",
           "get_worker_info", "random_split"]
