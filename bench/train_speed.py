"""Training speed and accuracy per recipe against a plain PyTorch loop (issue 3); prints a table, writes JSON.

usage: python bench/train_speed.py [--device cpu|cuda] [--seeds 3] [--best] [--json PATH]
The same as `convlens bench train`. --best adds best-mnist and best-fashion (about 12 minutes each on 2 cores).
"""

from convlens.cli import main

if __name__ == "__main__":
    import sys

    main(["bench", "train", *sys.argv[1:]])
