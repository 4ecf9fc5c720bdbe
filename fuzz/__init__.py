"""A fuzzing harness for the checker: see fuzz/README.md."""
