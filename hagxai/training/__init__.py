"""The trainer: k-fold cross-validation of HAG-XAI combiners on an evidence cache, with
per-epoch validation and faithfulness, atomic checkpoints and resume, logging and plots."""

from hagxai.training.run import train
from hagxai.training.trainer import Trainer, learning_rate

__all__ = ["Trainer", "learning_rate", "train"]
