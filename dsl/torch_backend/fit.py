"""Training on PyTorch with the engine's loop: the same batches, guards, History and checkpoints.

`torch_fit` runs engine.train.fit with a `TorchRun`, the engine's `Run` whose backend
methods execute on a torch module, optimizer and scheduler translated from the engine objects
(modules.py, optim.py, schedules.py). Everything else is the engine's own code: the batches
(the same shuffling generator), augmentation, the initial-loss check, the NaN and explosion
guards, early stopping, the progress bar and log lines, and the History. The measurements at
the end of each epoch run on torch too (eval mode, no_grad, the torch loss with its L2 term).

The engine objects stay the source of truth. Before every checkpoint the torch weights,
buffers, optimizer state and schedule position are copied into them and the engine writes
its own checkpoint, so a torch run's checkpoint resumes on the numpy engine and the other way
round; resuming loads the checkpoint into the engine objects and translates them again. At
the end the weights the run ends with are in the engine model, so dsl.training's metrics and
`topograd eval` work unchanged.

Dropout draws its masks from torch's generator, which is seeded at the start of every epoch
from the run's dropout generator (a numpy one that checkpoints save), so a resumed run draws
the masks an uninterrupted one would. The numpy engine draws different masks: the two
backends agree step for step only with dropout off.

With `nproc` > 1, dsl.torch_backend.distributed trains on that many processes; started by
torchrun, this process trains as one of torchrun's (dsl.torch_backend.distributed.torchrun_fit).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from topograd.dsl.torch_backend import require_torch
from topograd.dsl.torch_backend.losses import to_torch_loss
from topograd.dsl.torch_backend.modules import (
    copy_weights_to_engine,
    copy_weights_to_torch,
    to_torch_module,
    torch_parameters,
    transposed_parameters,
)
from topograd.dsl.torch_backend.optim import (
    copy_optimizer_state_to_engine,
    copy_optimizer_state_to_torch,
    to_torch_optimizer,
)
from topograd.dsl.torch_backend.schedules import (
    copy_schedule_state_to_engine,
    copy_schedule_state_to_torch,
    to_torch_schedule,
)
from topograd.engine.tensor import Tensor
from topograd.engine.train.checks import (
    NonFiniteReport,
    count_correct,
    locate_nonfinite,
    locate_nonfinite_gradient,
)
from topograd.engine.train.fit import Run, fit
from topograd.engine.train.history import History

torch = require_torch()


def torch_fit(
    built,
    *,
    device: str = "cpu",
    dtype=None,
    nproc: int | None = None,
    optimizer_index: int = 0,
    **options,
) -> History:
    """engine.train.fit of `built` (dsl.build.Built) on PyTorch; returns the History.

    `options` are fit's keyword arguments (dsl.training.fit_arguments gives the file's);
    `device` is "cpu" or "cuda", `dtype` the torch dtype (default: the engine parameters',
    float64 -> torch.float64), `nproc` the number of processes (distributed.py, which builds
    the file's optimizer number `optimizer_index` again in each; default 1). Started by
    torchrun (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set), this process joins torchrun's
    group instead of starting any, and `nproc`, when given, must be WORLD_SIZE. The final weights,
    optimizer state and schedule position are left in `built.model`, `built.optimizer` and
    `built.schedule`. Raises UnsupportedError for a construct PyTorch has no counterpart for,
    ValueError for a bad option.
    """
    from topograd.dsl.torch_backend.distributed import torchrun_world

    if torchrun_world() is not None:
        from topograd.dsl.torch_backend.distributed import torchrun_fit

        return torchrun_fit(built, nproc=nproc, device=device, dtype=dtype, **options)
    if nproc is None:
        nproc = 1
    if nproc != 1:
        from topograd.dsl.torch_backend.distributed import distributed_fit

        return distributed_fit(
            built,
            nproc=nproc,
            device=device,
            dtype=dtype,
            optimizer_index=optimizer_index,
            **options,
        )
    runner = functools.partial(TorchRun, spec=built.spec, device=device, dtype=dtype)
    return fit(built.model, built.data.splits.train, built.optimizer, runner=runner, **options)


def torch_device(device: str):
    """The torch device for `--device` ("cpu" or "cuda"); ValueError when it is not there."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda': PyTorch sees no CUDA device here (use --device cpu)")
    return torch.device(device)


class Translation:
    """The torch module, optimizer and scheduler made from the engine's, and the copies
    between them both ways (parameters matched by position)."""

    def __init__(self, model, optimizer, schedule, *, device="cpu", dtype=None, wrap=None):
        self.model, self.optimizer, self.schedule = model, optimizer, schedule
        self.device = torch_device(device) if isinstance(device, str) else device
        self.module = to_torch_module(model, dtype).to(self.device)
        if wrap is not None:
            self.module = wrap(self.module)  # (distributed: global batch norm) before the optimizer
        self.params = torch_parameters(self.module)
        self.dtype = self.params[0].dtype if self.params else torch.get_default_dtype()
        self.transposed = {i for i, flag in enumerate(transposed_parameters(self.module)) if flag}
        self.torch_optimizer = to_torch_optimizer(
            optimizer, model.parameters(), self.params, transposed=self.transposed
        )
        self.torch_schedule = to_torch_schedule(schedule, self.torch_optimizer)

    def to_engine(self) -> None:
        """Weights, buffers, optimizer state and schedule position into the engine objects."""
        copy_weights_to_engine(self.module, self.model)
        copy_optimizer_state_to_engine(
            self.torch_optimizer,
            self.optimizer,
            self.model.parameters(),
            self.params,
            transposed=self.transposed,
        )
        if self.schedule is not None:
            copy_schedule_state_to_engine(self.torch_schedule, self.schedule)

    def from_engine(self) -> None:
        """The engine objects' weights, optimizer state and schedule position into torch."""
        copy_weights_to_torch(self.model, self.module)
        copy_optimizer_state_to_torch(
            self.optimizer,
            self.torch_optimizer,
            self.model.parameters(),
            self.params,
            transposed=self.transposed,
        )
        if self.schedule is not None:
            copy_schedule_state_to_torch(self.schedule, self.torch_schedule)

    def tensor(self, array) -> torch.Tensor:
        """A batch of inputs in the module's dtype, on its device."""
        return torch.as_tensor(np.asarray(array), dtype=self.dtype, device=self.device)


class TorchRun(Run):
    """engine.train.fit's run with the steps, measurements and best weights on PyTorch.

    `spec` is the model file's (for the loss); `group`, when training on several processes,
    says which shard of every batch this process takes (distributed.py); `wrap` adapts the
    torch module (batch norm over the global batch) and `parallel` wraps it for the steps
    (DistributedDataParallel).
    """

    def __init__(
        self,
        model,
        optimizer,
        *,
        spec,
        device="cpu",
        dtype=None,
        group=None,
        wrap=None,
        parallel=None,
        **options,
    ):
        super().__init__(model, optimizer, **options)
        self.torch = Translation(
            model, optimizer, self.schedule, device=device, dtype=dtype, wrap=wrap
        )
        self.module = self.torch.module
        self.network = self.module if parallel is None else parallel(self.module)
        self.torch_loss = to_torch_loss(spec, self.module, model)
        self.group = group
        self.dropout = any(
            isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0
            for m in self.module.modules()
        )
        params = self.torch.params
        self.before = [torch.empty_like(p) for p in params] if self.track_stats else []

    # --- the steps ---------------------------------------------------------------------------
    def start_epoch(self) -> None:
        self.network.train()
        if self.dropout:  # the masks follow a generator that checkpoints save
            seed = int(self.dropout_rng.integers(2**62))
            torch.manual_seed(seed + (0 if self.group is None else self.group.rank))

    def forward(self, xb, yb):
        self.module.zero_grad(set_to_none=True)
        if self.group is None:
            loss = self.torch_loss(self.network(self.torch.tensor(xb)), yb)
            return loss.item(), (loss, xb, yb)
        return self.group.forward(self, xb, yb)

    def backward(self, handle):
        handle[0].backward()
        grads = [p.grad for p in self.torch.params]
        with torch.no_grad():
            present = _norms([g for g in grads if g is not None])
        found = iter(present)
        norms = [math.nan if g is None else next(found) for g in grads]
        return norms, all(math.isfinite(n) for n in present)

    def locate(self, handle, gradient: bool):
        """Find the node on the engine: the batch again through the engine model with the
        torch weights (the engine's graph can be searched, torch's cannot)."""
        _, xb, yb = handle
        copy_weights_to_engine(self.module, self.model)
        self.model.train()
        batch_loss = self.loss(self.model(Tensor(xb)), yb)
        if gradient:
            report = None
            if math.isfinite(batch_loss.item()):
                report = locate_nonfinite_gradient(batch_loss, self.model.parameters(), self.names)
        else:
            report = locate_nonfinite(batch_loss, self.names)
        if report is not None and report.op != "unknown":
            return report
        what = "gradient" if gradient else "loss"
        return NonFiniteReport(
            "backward" if gradient else "forward",
            "unknown",
            None,
            None,
            None,
            (),
            None,
            f"the {what} was not finite on PyTorch (the numpy engine, given the same batch and "
            "weights, found no non-finite node)",
        )

    def update(self, norms) -> None:
        optimizer = self.torch.torch_optimizer
        if not self.track_stats:
            optimizer.step()
            return
        params = self.torch.params
        with torch.no_grad():
            torch._foreach_copy_(self.before, params)
            scales = _norms(self.before)
            optimizer.step()
            torch._foreach_sub_(self.before, params)
            changes = _norms(self.before)
        self.record(norms, scales, changes)

    def schedule_step(self) -> None:
        self.torch.torch_schedule.step()

    def current_lr(self) -> float:
        return float(self.torch.torch_optimizer.param_groups[0]["lr"])

    # --- measuring and keeping weights -------------------------------------------------------
    def measure(self, data):
        """(mean loss, accuracy) on `data`: eval mode, no_grad, chunks of eval_batch_size."""
        module = self.module
        training = [(m, m.training) for m in module.modules()]
        module.eval()
        total, correct = 0.0, 0
        try:
            with torch.no_grad():
                for begin in range(0, len(data), self.eval_batch_size):
                    x = data.x[begin : begin + self.eval_batch_size]
                    y = data.y[begin : begin + self.eval_batch_size]
                    outputs = module(self.torch.tensor(x))
                    total += self.torch_loss(outputs, y).item() * len(x)
                    hits = count_correct(outputs.cpu().numpy(), y)
                    correct = None if hits is None or correct is None else correct + hits
        finally:
            for m, flag in training:
                m.training = flag
        return total / len(data), (None if correct is None else correct / len(data))

    def weights(self):
        return {k: v.detach().clone() for k, v in self.module.state_dict().items()}

    def load_weights(self, state) -> None:
        self.module.load_state_dict(state)

    def to_engine(self) -> None:
        self.torch.to_engine()

    def from_engine(self) -> None:
        self.torch.from_engine()

    def save(self, path, epoch: int) -> None:
        if self.group is None or self.group.rank == 0:  # rank 0 writes the checkpoints
            super().save(path, epoch)


def _norms(tensors) -> list[float]:
    """The 2-norm of each tensor, as Python floats (one transfer for all of them)."""
    if not tensors:
        return []
    return torch.stack(torch._foreach_norm(tensors)).tolist()
