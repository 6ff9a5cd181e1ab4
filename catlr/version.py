"""catlr's version: a leaf, so that modules recording it import nothing else."""

__version__ = "0.2.0"
