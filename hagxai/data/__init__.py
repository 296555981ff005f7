"""Datasets: one dataset type, a reader per on-disk format, the synthetic demo sets and the
simulated observer."""

from hagxai.data.dataset import AttentionDataset
from hagxai.data.open import open_dataset, open_from_config, scan_dataset
from hagxai.data.sample import Sample
from hagxai.data.writer import DatasetWriter

__all__ = [
    "AttentionDataset",
    "DatasetWriter",
    "Sample",
    "open_dataset",
    "open_from_config",
    "scan_dataset",
]
