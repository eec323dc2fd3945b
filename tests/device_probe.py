"""A probe that finds tensors a runner left off `ctx.device`, without a GPU.

The run uses an ordinary CPU device as `ctx.device`, so nothing fails the way CUDA would. Instead a
`TorchFunctionMode` sees every torch call and keeps the set of *placed* storages, the ones "on the
device", in a WeakSet of storage objects: views and `param.data = placed` (what `nn.Module.to` does)
share a placed storage, and a freed storage drops out. A result is placed when it was made

  - by `.to(ctx.device)` or `.to(placed_tensor)`, or by a factory given `device=ctx.device`;
  - by any other op whose tensor inputs are all placed (so `*_like`, `Tensor.new_*`, views, and a
    parameter's `.grad`, read through its property, follow their input); by indexing or an in-place
    op on a placed tensor;

and everything else is on the host: `torch.from_numpy`, `torch.zeros(n)` with no device, `.cpu()`,
a module's parameters before `.to`. A *violation* is what would raise on a GPU:

  - a computing op (not an in-place init, a view, a getter or a move) reading an `nn.Parameter` or
    a module buffer that was never placed: a model that never went to the device;
  - an op mixing placed and host tensors. 0-dim tensors are exempt (CUDA takes CPU scalars), and so
    are `copy_` and the `.data` setter, which CUDA does across devices. Indexing follows CUDA: a
    placed tensor may take host indices, a host tensor may not take placed ones;
  - a random op drawing with a `torch.Generator` made for the other side (the probe swaps in a
    subclass of `torch.Generator` that remembers its device);
  - `.numpy()` of a placed tensor (CUDA wants `.cpu()` first).

On the CPU, `.to(ctx.device)` and `.cpu()` return their input itself where a GPU makes a copy; the
probe returns a copy too, so a host original stays on the host and using it later is still caught.
Violations are collected per line of the suite's code (reproductions/ or common/), not raised.
`device_ops` counts placed results: a run with none ignored ctx.device, parameters or not.

Since ctx.device is the CPU, the string "cpu" means the host (`.to("cpu")`, `device="cpu"`, a
`torch.Generator()`), and so does a host tensor's `.device`: the probe hands out a distinct
`torch.device("cpu")` object for those, so `device=x.device` follows x. Blind spot: any other
`torch.device("cpu")` object counts as ctx.device (`nn.Module.to` re-makes its device argument).
torch.compile is disabled while probing (`torch._dynamo.config.disable`): dynamo would trace the
probe's bookkeeping instead of running it for every op. The smoke configs do not compile anyway.
"""
from __future__ import annotations

import sys
import weakref

import torch
from torch import nn
from torch.nn.modules.module import register_module_buffer_registration_hook
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

from common.papers import ROOT

_SUITE = tuple(f"{ROOT / folder}/" for folder in ("reproductions", "common"))
_INDEXING = {"__getitem__", "__setitem__"}
_CROSS_DEVICE_OK = {"copy_", "__set__", "to", "cpu", "_has_compatible_shallow_copy_type"}  # no mixing check
_IN_PLACE_DUNDERS = {f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul",
                                                "and", "or", "xor", "lshift", "rshift")} | {"__setitem__"}
_VIEWS = {"__getitem__", "view", "view_as", "reshape", "t", "transpose", "permute", "narrow", "select", "flatten",
          "unflatten", "squeeze", "unsqueeze", "expand", "expand_as", "diagonal", "split", "chunk", "unbind"}
_NOT_COMPUTING = _VIEWS | _CROSS_DEVICE_OK | {
    "__get__", "__repr__", "__format__", "__len__", "__hash__", "__deepcopy__", "__reduce_ex__", "__setstate__",
    "__float__", "__int__", "__bool__", "__index__", "item", "tolist", "numpy", "detach", "clone", "dim", "size",
    "numel", "stride", "is_floating_point", "is_complex", "element_size", "data_ptr", "untyped_storage",
    "is_contiguous", "register_hook"}


def _name(func) -> str:
    return getattr(func, "__name__", str(func))


def _in_place(name: str) -> bool:
    """`add_`, `uniform_` (an init), `x += y`, `x[i] = y`: the result is `self`."""
    return (name.endswith("_") and not name.startswith("__")) or name in _IN_PLACE_DUNDERS


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):  # sparse, nested, ...: not tracked
        return None


def _location() -> str | None:
    """`reproductions/gan/runner.py:123`: the innermost frame in the suite's own code."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(_SUITE):
            return f"{frame.f_code.co_filename[len(str(ROOT)) + 1:]}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class DeviceProbe(TorchFunctionMode):
    def __init__(self, device: torch.device | str):
        super().__init__()
        self.device = torch.device(device)
        self.host = torch.device("cpu")  # the `.device` of host tensors: equal to the CPU, not ctx.device
        self.placed = weakref.WeakSet()  # storages on the device
        self.violations: dict[str, list] = {}  # location -> [description, times]
        self.device_ops = 0

    def is_placed(self, t: torch.Tensor) -> bool:
        storage = _storage(t)
        return storage is not None and storage in self.placed

    def _is_device(self, device) -> bool | None:
        """Whether `device` means ctx.device. The string "cpu" and a host tensor's `.device` (handed out
        as the object `self.host`) mean the host; any other device equal to ctx.device is ctx.device."""
        if device is self.host or (isinstance(device, str) and device.startswith("cpu")):
            return False
        try:
            return torch.device(device) == self.device
        except (RuntimeError, TypeError):
            return None

    def _target(self, name: str, args, kwargs) -> bool | None:
        """Where an explicit placement puts the result: True on the device, False on the host, None
        when the call names no device."""
        if name == "cpu":
            return False
        if name == "to":
            for a in [*args[1:], kwargs.get("device"), kwargs.get("other")]:
                if isinstance(a, torch.Tensor):
                    return self.is_placed(a)
                if isinstance(a, (torch.device, str, int)) and not isinstance(a, bool):
                    return self._is_device(a)
            return None
        if kwargs.get("device") is not None:
            return self._is_device(kwargs["device"])
        return None

    def _violation(self, name: str, problem: str) -> None:
        entry = self.violations.setdefault(_location() or f"(outside the suite, {name})", [f"{name}: {problem}", 0])
        entry[1] += 1

    def _check(self, name: str, args, inputs: list[torch.Tensor]) -> None:
        if not (_in_place(name) or name in _NOT_COMPUTING):
            for t in inputs:
                if ((isinstance(t, nn.Parameter) or getattr(t, "_probe_buffer", False))
                        and t.dim() > 0 and not self.is_placed(t)):
                    kind = "parameter" if isinstance(t, nn.Parameter) else "buffer"
                    return self._violation(name, f"reads a {kind} {tuple(t.shape)} that was never moved to the device")
        if name in ("numpy", "__array__") and self.is_placed(args[0]):
            self._violation(name, "reads a tensor on the device into numpy (CUDA needs .cpu() first)")
        elif name in _INDEXING:
            base, index = args[0], args[1]
            indices = [t for t in tree_leaves(index) if isinstance(t, torch.Tensor) and t.dim() > 0]
            if not self.is_placed(base) and any(self.is_placed(i) for i in indices):
                self._violation(name, "indexes a host tensor with indices on the device")
            value = args[2] if name == "__setitem__" else None
            if (indices and isinstance(value, torch.Tensor) and value.dim() > 0
                    and self.is_placed(value) != self.is_placed(base)):  # advanced indexing: index_put_
                self._violation(name, "writes a value from the other device through tensor indices")
        elif name not in _CROSS_DEVICE_OK:
            placed = [self.is_placed(t) for t in inputs if t.dim() > 0 and _storage(t) is not None]
            if any(placed) and not all(placed):
                self._violation(name, "mixes tensors on the device with tensors left on the host")

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        if name == "__get__" and _name(getattr(func, "__self__", None)) == "device" and args[0].device.type == "cpu":
            return self.device if self.is_placed(args[0]) else self.host  # `device=x.device` follows x
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        mark = self._target(name, args, kwargs)
        if mark is None:
            self._check(name, args, inputs)
            if (_in_place(name) or name in _INDEXING) and inputs:
                mark = self.is_placed(inputs[0])  # where `self` is
            else:
                sized = [t for t in inputs if t.dim() > 0] or inputs
                mark = bool(sized) and all(self.is_placed(t) for t in sized)
        generator = kwargs.get("generator")
        if generator is not None and getattr(generator, "on_device", False) != mark:
            self._violation(name, f"draws {'on' if mark else 'off'} the device with a generator made "
                                  f"{'off' if mark else 'on'} it")
        self.device_ops += mark
        sides = {id(s): self.is_placed(t) for t in inputs if (s := _storage(t)) is not None}

        def place(t):
            if not isinstance(t, torch.Tensor) or (storage := _storage(t)) is None:
                return t
            if sides.get(id(storage), mark) != mark:  # the CPU aliased an input where a GPU would copy
                t = t.clone()
                storage = t.untyped_storage()
            if mark:
                self.placed.add(storage)
            else:
                self.placed.discard(storage)
            return t

        return tree_map(place, func(*args, **kwargs))

    def __enter__(self):
        probe = self
        self._torch_generator = torch_generator = torch.Generator

        class AnyGenerator(type(torch_generator)):  # generators made before stay isinstance(g, torch.Generator)
            def __instancecheck__(cls, obj):
                return isinstance(obj, torch_generator)

        class Generator(torch_generator, metaclass=AnyGenerator):
            def __init__(self, device="cpu"):  # the C type's __new__ makes it; this only remembers where
                self.on_device = bool(probe._is_device(device))

        def mark_buffer(module, name, buffer):
            if buffer is not None:
                buffer._probe_buffer = True

        torch.Generator = Generator
        self._hook = register_module_buffer_registration_hook(mark_buffer)
        self._dynamo = torch._dynamo.config.patch(disable=True)
        self._dynamo.__enter__()
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._dynamo.__exit__(*exc)
            self._hook.remove()
            torch.Generator = self._torch_generator

    def report(self, limit: int = 5) -> str:
        items = list(self.violations.items())[:limit]
        return (f"{len(self.violations)} location(s), {sum(n for _, n in self.violations.values())} op(s); first: "
                + "; ".join(f"{where} {what} (x{n})" for where, (what, n) in items))
