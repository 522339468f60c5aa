"""Datasets for training: built-in sets, the user's CSV/NPZ files, and their binding to a model's inputs.

The trainer calls

    data = load_for_model(model, data=args.data, target=args.target, val=args.val, seed=args.seed)
    print(data.describe())
    for epoch in range(epochs):
        for batch in iterate_batches(data.train, batch_size, seed=seed, epoch=epoch):
            ...                     # batch: {input name: array}
    ... evaluate on data.val, then once on data.test

Modules: `load` (specs, splits, BoundData), `images` (MNIST, Fashion-MNIST),
`cifar` (CIFAR-10, CIFAR-100: their archives and record format),
`fetch` (files on disk, the cache, downloads), `idx` (the IDX format), `toy`
(gates, spiral, sine), `tables` (CSV, NPZ), `text` (texts for character models,
their vocabulary), `sequences` (windows of a sequence for a model, series),
`binding` (arrays to inputs, standardization), `splits` (seeded splits,
contiguous ones for windows, training subsets, label noise and shuffling, and
batch order), `dataset` (the Dataset and Baseline types).
"""

from .dataset import Baseline, Dataset
from .load import BUILTIN_NAMES, BoundData, bind_dataset, load_dataset, load_for_model, open_dataset
from .splits import batch_indices, epoch_order, iterate_batches

__all__ = ["BUILTIN_NAMES", "Baseline", "BoundData", "Dataset", "batch_indices", "bind_dataset", "epoch_order",
           "iterate_batches", "load_dataset", "load_for_model", "open_dataset"]
