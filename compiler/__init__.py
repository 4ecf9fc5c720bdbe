"""nnspec.compiler: filled in by later stages of the pipeline."""
