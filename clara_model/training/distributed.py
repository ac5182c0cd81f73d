"""Processes and ranks: the launcher's environment (or a standalone default), DeepSpeed's process group and
engine config, and the few collectives the trainer needs.

Launchers set RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (`deepspeed` also passes --local_rank,
`torchrun` sets LOCAL_WORLD_SIZE, `deepspeed` LOCAL_SIZE). Without a launcher the trainer is one process and fills
them in itself, on a free port. On a machine without a GPU DeepSpeed picks its CPU accelerator and gloo.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ranks:
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_environment(local_rank: int | None = None) -> Ranks:
    """Return this process's ranks, filling in a single-process environment when no launcher set one.

    `local_rank` is DeepSpeed's --local_rank argument; LOCAL_RANK in the environment wins when both are set.
    """
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        os.environ.update(
            RANK="0",
            LOCAL_RANK="0",
            WORLD_SIZE="1",
            LOCAL_WORLD_SIZE="1",
            MASTER_ADDR=os.environ.get("MASTER_ADDR", "127.0.0.1"),
            MASTER_PORT=os.environ.get("MASTER_PORT") or str(free_port()),
        )
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(local_rank or 0)
    world_size = int(os.environ["WORLD_SIZE"])
    local_world = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or str(world_size)
    return Ranks(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ["LOCAL_RANK"]),
        world_size=world_size,
        local_world_size=int(local_world),
    )


def free_port() -> int:
    """Return a TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_process_group(ranks: Ranks) -> torch.device:
    """Start DeepSpeed's process group (nccl on GPU, gloo on CPU) and return this rank's device.

    On CPU, when OMP_NUM_THREADS is not set, each rank gets an equal share of the cores: ranks that each take
    every core slow each other down many times over.
    """
    import deepspeed
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() == "cuda":
        torch.cuda.set_device(ranks.local_rank)
        device = torch.device("cuda", ranks.local_rank)
    else:
        device = torch.device("cpu")
        if "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // ranks.local_world_size))
    deepspeed.init_distributed(dist_backend=accelerator.communication_backend_name())
    logger.info("rank %d/%d on %s (%s, %d threads)", ranks.rank, ranks.world_size, device,
                dist.get_backend(), torch.get_num_threads())
    return device


def deepspeed_config(
    *, global_batch: int, micro_batch: int, accumulation: int, grad_clip: float, zero_stage: int, bf16: bool
) -> dict[str, Any]:
    """Return the DeepSpeed config: the reference's ZeRO-2 without offload, its clipping, bf16 or fp32."""
    return {
        "train_batch_size": global_batch,
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": accumulation,
        "gradient_clipping": grad_clip,
        "zero_optimization": {"stage": zero_stage, "overlap_comm": False, "contiguous_gradients": True},
        "bf16": {"enabled": bf16},
        "steps_per_print": 2**31 - 1,  # the trainer logs; DeepSpeed's own step lines would duplicate it
        "wall_clock_breakdown": False,
    }


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over all ranks in place and return it."""
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_to_main(obj: Any) -> list[Any] | None:
    """Return every rank's `obj` on rank 0 (in rank order) and None elsewhere. Tensors must be on the CPU."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    received = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, received, dst=0)
    return received


def all_gather(obj: Any) -> list[Any]:
    """Return every rank's `obj` on every rank, in rank order."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return [obj]
    received: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(received, obj)
    return received


def broadcast_from_main(obj: Any) -> Any:
    """Return rank 0's `obj` on every rank."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def destroy() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
