from .cli import main
from .distributed import current_world, exit_worker

main()
if current_world().distributed:  # a torchrun worker (convlens train --nproc N) ends without running torch's exit
    exit_worker()
