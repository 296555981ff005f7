"""Datasets: the on-disk formats, the synthetic demo sets and the simulated observer."""

from hagxai.data.format import DatasetWriter, HumanAttentionDataset, Sample
from hagxai.data.formats import AttentionDataset, open_dataset, open_from_config, scan_dataset

__all__ = [
    "AttentionDataset",
    "DatasetWriter",
    "HumanAttentionDataset",
    "Sample",
    "open_dataset",
    "open_from_config",
    "scan_dataset",
]
