"""Cycles' render device in a worker: the CPU, or one GPU per worker.

Imports ``bpy``: only worker processes import this module. Which device a
name means and which GPU a worker takes are pure functions in
:mod:`two4two._blender.spec`, tested without Blender.
"""

from __future__ import annotations

import os

import bpy

from two4two._blender.spec import backends_to_try, worker_devices

__all__ = ["select_device"]


def select_device(preference: str, worker_id: int = 0) -> str:
    """Choose Cycles' device (see :data:`two4two._blender.spec.DEVICES`); a GPU choice
    switches on one GPU for this worker (:func:`~two4two._blender.spec.worker_devices`).

    Returns:
        ``'CPU'`` or the GPU backend in use (``'OPTIX'``, ``'CUDA'``, ...).

    Raises:
        RuntimeError: ``gpu``, ``cuda`` or ``optix`` was asked for and Cycles finds no
            such device (the message names it and ``CUDA_VISIBLE_DEVICES``).
    """
    backends = backends_to_try(preference)
    if not backends:
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    for backend in backends:
        try:
            prefs.compute_device_type = backend
        except TypeError:  # backend not compiled into this build
            continue
        prefs.get_devices()
        devices = list(prefs.get_devices_for_type(backend))
        use = worker_devices([d.type for d in devices], backend, worker_id)
        if any(use):
            for d, on in zip(devices, use, strict=True):
                d.use = on
            return backend
    prefs.compute_device_type = "NONE"
    if preference == "auto":
        return "CPU"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
    wanted = "/".join(backends) if preference != "gpu" else "CUDA/OptiX/HIP/oneAPI"
    raise RuntimeError(f"render_device={preference!r}, but Cycles finds no {wanted} "
                       f"device{seen}; use render_device='cpu' or run on a GPU node")
