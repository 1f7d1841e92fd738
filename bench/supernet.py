"""Partial channels: one PC-DARTS search step with K=4 against K=1 (plain DARTS), side by side.

Each (size, K) runs in a fresh process so memory peaks do not mix. Printed per size:
peak memory of one step (CUDA: max_memory_allocated; CPU: growth of the peak RSS over the
step), bytes autograd saves for backward in the weight step's forward (exact, machine
independent), and the mean step time (architecture step + weight step) — and the ratios
K=4 / K=1. Target: memory ratio ≤ 0.45.

    python bench/supernet.py                  # CPU sizes (2 cores are enough)
    python bench/supernet.py --device cuda    # adds the HMDB51 size (C=512, batch 64)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

from adf_service.space import SearchSpace
from adf_service.supernet import SearchNetwork
from adf_service.train.runtime import Runtime, keep_freed_memory_in_heap
from adf_service.train.search import SearchConfig
from adf_service.train.step import SearchStep

SIZES = {
    # name: (layer3 channels per modality, T×H×W, fusion C, batch)
    "cpu-small": ((256, 256, 64), (8, 7, 7), 128, 8),
    "hmdb51": ((1024, 1024, 256), (8, 7, 7), 512, 64),  # docs/design.md §2, thesis §5.2.2
}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _saved_bytes(model: SearchNetwork, features, labels, runtime: Runtime) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), runtime.autocast():
        loss = torch.nn.functional.cross_entropy(model(features).float(), labels)
    del loss
    return sum(storages.values())


def worker(size: str, partial_k: int, device: str, steps: int) -> dict:
    keep_freed_memory_in_heap()
    in_channels, thw, channels, batch = SIZES[size]
    runtime = Runtime(device=device)
    torch.manual_seed(0)
    space = SearchSpace("S2", n_inputs=2, n_cells=2, channels=channels, partial_k=partial_k)
    model = runtime.prepare_model(SearchNetwork(space, in_channels, n_classes=51))
    stepper = SearchStep(model, SearchConfig(), runtime)

    def batch_of():
        return [torch.randn(batch, c, *thw) for c in in_channels], torch.randint(0, 51, (batch,))

    weight_batch, arch_batch = batch_of(), batch_of()
    cuda = runtime.torch_device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    stepper.step(weight_batch, arch_batch)
    if cuda:
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    saved = _saved_bytes(model, runtime.prepare_inputs(weight_batch[0]), weight_batch[1].to(runtime.torch_device), runtime)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        stepper.step(weight_batch, arch_batch)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return {
        "size": size,
        "partial_k": partial_k,
        "peak_bytes": peak,
        "saved_bytes": saved,
        "step_seconds": sum(times) / len(times),
        "runtime": runtime.describe(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=None, help="comma-separated; default: cpu-small (+ hmdb51 on cuda)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--worker", nargs=2, metavar=("SIZE", "K"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], int(args.worker[1]), args.device, args.steps)))
        return
    sizes = args.sizes.split(",") if args.sizes else ["cpu-small"] + (["hmdb51"] if args.device.startswith("cuda") else [])
    print(f"# bench/supernet.py  {time.strftime('%Y-%m-%d')}  {platform.node()}  "
          f"{platform.processor() or platform.machine()}  torch {torch.__version__}  "
          f"threads {torch.get_num_threads()}  device {args.device}")
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"# GPU: {torch.cuda.get_device_name()}")
    print(f"{'size':<10} {'K':>2} {'peak MB':>9} {'saved MB':>9} {'step s':>8}")
    for size in sizes:
        rows = {}
        for k in (4, 1):
            out = subprocess.run(
                [sys.executable, __file__, "--device", args.device, "--steps", str(args.steps), "--worker", size, str(k)],
                check=True, capture_output=True, text=True,
            ).stdout
            rows[k] = json.loads(out.strip().splitlines()[-1])
            r = rows[k]
            print(f"{size:<10} {k:>2} {r['peak_bytes'] / 2**20:>9.0f} {r['saved_bytes'] / 2**20:>9.0f} {r['step_seconds']:>8.3f}")
        ratio = {key: rows[4][key] / rows[1][key] for key in ("peak_bytes", "saved_bytes", "step_seconds")}
        verdict = "meets" if ratio["peak_bytes"] <= 0.45 else "MISSES"
        print(f"{size:<10} K=4/K=1: peak memory {ratio['peak_bytes']:.2f} ({verdict} target ≤ 0.45), "
              f"saved activations {ratio['saved_bytes']:.2f}, step time {ratio['step_seconds']:.2f}  [{rows[4]['runtime']}]")


if __name__ == "__main__":
    main()
