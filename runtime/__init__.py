"""nnspec.runtime: filled in by later stages of the pipeline."""
