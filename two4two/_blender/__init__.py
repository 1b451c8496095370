"""Internals of the Blender renderer (:mod:`two4two.blender` is the public API).

Modules without ``bpy`` (safe in any process): :mod:`.geometry` (block poses,
numpy), :mod:`.spec` (what a worker needs per image), :mod:`.exr` (EXR reader),
:mod:`.worker` (the worker loop; imports :mod:`.scene` lazily). Only
:mod:`.scene` imports ``bpy``; it is imported in worker processes.
"""
