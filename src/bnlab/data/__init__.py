"""Data sets as in-memory tensors (MNIST 5k, digits, MNIST-1D, CIFAR-10, synthetic) and a seeded batcher."""

from bnlab.data.batches import BatchIterator
from bnlab.data.dataset import Dataset
from bnlab.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "BatchIterator", "Dataset", "load_dataset"]
