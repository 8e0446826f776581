"""Device selection: ``"auto"`` means CUDA when torch sees a GPU, else CPU."""

from __future__ import annotations

__all__ = ["resolve_device"]

_VALID_PREFIXES = ("cpu", "cuda", "mps")


def resolve_device(device: str | None = "auto") -> str:
    """Turn a user's device choice into a torch device string.

    Args:
        device: ``"auto"`` (or ``None``), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...

    Returns:
        ``"cuda"`` or ``"cpu"`` for ``"auto"``; an explicit choice unchanged.
    """
    if device is None or device == "auto":
        try:
            import torch
        except ImportError:
            return "cpu"
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str) or not device.split(":")[0] in _VALID_PREFIXES:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N'; got {device!r}")
    return device
