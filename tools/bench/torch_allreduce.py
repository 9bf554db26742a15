#!/usr/bin/env python3
"""PyTorch's side of the all-reduce benchmark: `torch.distributed.all_reduce` (gloo, the CPU
backend DDP uses) of N float32 values over W processes on loopback TCP, as one gradient exchange
of a multi-process run. Prints {"seconds": median of the timed repetitions on rank 0}.

    python tools/bench/torch_allreduce.py --count 133734400 --world 2
"""
import argparse
import json
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank, world, n, port, reps, queue):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    x = torch.full((n,), float(rank))
    times = []
    for _ in range(reps):
        dist.barrier()
        t = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - t)
    if rank == 0:
        queue.put(statistics.median(times))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=rank_main, args=(r, a.world, a.count, port, a.reps, queue)) for r in range(a.world)]
    for p in procs:
        p.start()
    seconds = queue.get()
    for p in procs:
        p.join()
    print(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main()
