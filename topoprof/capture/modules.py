"""Static facts about the model's modules, computed once per profile.

Names come from ``named_modules()`` (a module reachable under two names keeps the first, as in
PyTorch); they are computed once here and never per call (the torchinfo lesson).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ModuleInfo", "ModuleTable", "ROOT_NAME"]

#: Qualified name of the root module, as ``named_modules()`` gives it.
ROOT_NAME = ""


@dataclass(frozen=True)
class ModuleInfo:
    """One module: its qualified name, class, owner and parameter totals (with descendants)."""

    index: int
    name: str
    kind: str
    parent: int  # index of the owning module, -1 for the root
    leaf: bool
    params: int
    param_bytes: int

    @property
    def label(self) -> str:
        """Human label: the qualified name, or the class name for the root."""
        return self.name if self.name else self.kind


class ModuleTable:
    """Index of every module of ``model``: ``infos[i]``, ``index[id(module)]``."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            from ..errors import ProfilerUsageError

            raise ProfilerUsageError(f"topoprof.profile() needs a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.modules: list[nn.Module] = []
        self.infos: list[ModuleInfo] = []
        self.index: dict[int, int] = {}
        name_to_index: dict[str, int] = {}
        for name, module in model.named_modules():
            i = len(self.modules)
            parent = -1
            if name:
                parent = name_to_index[name.rpartition(".")[0]]
            params = 0
            nbytes = 0
            for p in module.parameters():  # parameters() yields shared parameters once
                params += p.numel()
                nbytes += p.numel() * p.element_size()
            leaf = next(iter(module.children()), None) is None
            self.infos.append(ModuleInfo(i, name, type(module).__name__, parent, leaf, params, nbytes))
            self.modules.append(module)
            self.index[id(module)] = i
            name_to_index[name] = i

    def __len__(self) -> int:
        return len(self.infos)

    def device_type(self) -> str:
        """``"cuda"`` if any parameter or buffer of the model is on a CUDA device, else ``"cpu"``."""
        for t in self.model.parameters():
            return t.device.type
        for t in self.model.buffers():
            return t.device.type
        return "cpu"


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")
