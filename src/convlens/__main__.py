from .cli import main

main()

from .distributed import current_world, exit_worker  # noqa: E402 - after main, so --help never loads torch

if current_world().distributed:  # a torchrun worker (convlens train --nproc N) ends without running torch's exit
    exit_worker()
