"""Datasets: the on-disk format, the synthetic demo sets and the simulated observer."""

from hagxai.data.format import DatasetWriter, HumanAttentionDataset, Sample

__all__ = ["DatasetWriter", "HumanAttentionDataset", "Sample"]
