"""A probe that finds tensors a runner left off `ctx.device`, without a GPU.

The run uses an ordinary CPU device as `ctx.device`, so nothing can fail the way CUDA would. Instead
a `TorchFunctionMode` watches every torch call and keeps the set of *placed* storages: those made by
`.to(ctx.device)` (what `nn.Module.to` calls for each parameter and buffer), by a factory given
`device=ctx.device`, or by any op whose tensor inputs are all placed. A storage made any other way
(`torch.from_numpy`, `torch.zeros(n)` without a device, an `nn.Module`'s parameters before `.to`) is
unplaced. A *violation* is what would break on a GPU:

  - an op mixing placed and unplaced tensors (0-dim tensors excepted: CUDA accepts CPU scalars;
    `copy_` and indexing excepted: CUDA copies across devices and accepts CPU indices), or
  - an op reading an `nn.Parameter` that was never placed (a model that never went to the device).

A runner that ignores `ctx.device` entirely trips the second rule at its first forward pass; one that
moves its model but not its batches trips the first. Placement is tracked by storage address, so views
and `param.data = placed` keep it (a freed address reused later can only hide a violation, never
invent one). torch.compile is disabled while probing: dynamo would trace through the mode.
"""
from __future__ import annotations

import traceback

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

_FACTORIES_WITH_DEVICE = "device"
_CROSS_DEVICE_OK = {"copy_", "__getitem__", "__setitem__", "index_select", "gather", "numpy", "cpu", "item",
                    "tolist", "__array__", "__len__", "dim", "size", "__repr__", "__format__"}


_METADATA = {"dim", "size", "numel", "is_floating_point", "is_complex", "element_size", "stride", "data_ptr",
             "requires_grad_", "detach", "clone", "is_contiguous", "untyped_storage"}


def _storage(t: torch.Tensor) -> int | None:
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


class DeviceProbe(TorchFunctionMode):
    def __init__(self, device: torch.device | str):
        super().__init__()
        self.device = torch.device(device)
        self.placed: set[int] = set()
        self.violations: dict[str, str] = {}  # location -> description (one per location)

    def is_placed(self, t: torch.Tensor) -> bool:
        return _storage(t) in self.placed

    def _targets_device(self, func, args, kwargs) -> bool | None:
        """True for an explicit move/creation onto ctx.device, None when the call names no device."""
        name = _name(func)
        if name == "to":
            for a in list(args[1:]) + list(kwargs.values()):
                if isinstance(a, (torch.device, str)) and not isinstance(a, torch.dtype):
                    try:
                        return torch.device(a) == self.device
                    except RuntimeError:
                        continue
                if isinstance(a, torch.Tensor):
                    return self.is_placed(a)
            return None
        if _FACTORIES_WITH_DEVICE in kwargs and kwargs[_FACTORIES_WITH_DEVICE] is not None:
            return torch.device(kwargs[_FACTORIES_WITH_DEVICE]) == self.device
        return None

    def _violation(self, func, problem: str) -> None:
        here = None
        for frame in reversed(traceback.extract_stack()[:-2]):
            if ("reproductions/" in frame.filename or "/common/" in frame.filename) and "device_probe" not in frame.filename:
                here = f"{frame.filename.split('/repro')[-1].split('/main/')[-1]}:{frame.lineno}"
                break
        self.violations.setdefault(here or f"(outside the suite's code, {_name(func)})", f"{_name(func)}: {problem}")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        target = self._targets_device(func, args, kwargs)
        name = _name(func)
        if target is None and name not in _CROSS_DEVICE_OK:
            sized = [t for t in inputs if t.dim() > 0]
            placed = [self.is_placed(t) for t in sized]
            if any(placed) and not all(placed):
                self._violation(func, "mixes tensors on the device with tensors left on the host")
            computes = not (name.endswith("_") or name.startswith("__") or name in _METADATA)  # not init, not a getter
            for t in inputs if computes else ():
                if isinstance(t, nn.Parameter) and not self.is_placed(t):
                    self._violation(func, f"reads a parameter {tuple(t.shape)} that was never moved to the device")
                    break
        if target is not None:
            mark = target
        elif name.endswith("_") or name in ("__getitem__", "index_select", "gather"):
            mark = bool(inputs) and self.is_placed(inputs[0])  # in place, or a selection: where `self` is
        else:
            sized = [t for t in inputs if t.dim() > 0] or inputs
            mark = bool(sized) and all(self.is_placed(t) for t in sized)
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and (key := _storage(t)) is not None:
                if mark:
                    self.placed.add(key)
                else:  # a new host tensor, possibly at the address of a freed placed one
                    self.placed.discard(key)
        return out

    def _from_numpy(self, array):
        """torch.from_numpy bypasses the mode: its tensor is host memory, whatever address it got."""
        out = self._torch_from_numpy(array)
        self.placed.discard(_storage(out))
        return out

    def __enter__(self):
        self._dynamo = torch._dynamo.config.patch(disable=True)
        self._dynamo.__enter__()
        self._torch_from_numpy, torch.from_numpy = torch.from_numpy, self._from_numpy
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            torch.from_numpy = self._torch_from_numpy
            self._dynamo.__exit__(*exc)

    def report(self, limit: int = 5) -> str:
        items = list(self.violations.items())[:limit]
        return f"{len(self.violations)} location(s); first: " + "; ".join(f"{where} {what}" for where, what in items)
