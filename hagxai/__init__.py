"""hagxai: learn explanation heads for vision models from human attention (HAG-XAI)."""

from hagxai.evidence import Evidence

__version__ = "0.1.0"
__all__ = ["Evidence", "__version__"]
