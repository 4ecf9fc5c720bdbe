"""nnspec.verify: filled in by later stages of the pipeline."""
