"""Scale out on a Ray cluster (docs/cluster.md).

    pool.py             RayExecutor: the remote engine's Executor on a pool of Ray actors, one
                        per GPU (or per CPU), with retries from the checkpoint when a worker dies
    worker.py           EngineWorker: one warm engine (weights loaded once) in a Ray actor; runs
                        jobs and, for another worker's long shot, its share of the windows
    window_parallel.py  one shot over several workers: the split of each step's context windows
                        (pure; shared by the Ray pool and a torch.distributed launch)
    distributed.py      `torchrun ... -m aa_engine animate`: the same split over the ranks of one
                        multi-GPU machine, without Ray

Only pool.py and worker.py import ray (an optional dependency: `pip install -e .[cluster]`).
"""
