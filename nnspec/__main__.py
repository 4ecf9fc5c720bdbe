"""`python -m nnspec` (and `torchrun ... -m nnspec train FILE`): the command line.

Guarded, so that a process started by multiprocessing's spawn never runs the CLI again.
"""

from nnspec.cli import main

if __name__ == "__main__":
    main()
