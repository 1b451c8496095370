"""Internals of the Blender renderer (:mod:`two4two.blender` is the public API).

Modules without ``bpy`` (safe in any process): :mod:`.geometry` (block poses,
numpy), :mod:`.spec` (what a worker needs per image), :mod:`.exr` (EXR reader),
:mod:`.worker` (the worker loop; imports :mod:`.scene` lazily), :mod:`.pool`
(starts and feeds the worker processes), :mod:`.renderer` (the parent side:
:class:`~.renderer.Renderer`, one call through the pool). Only :mod:`.scene`
and :mod:`.devices` (the Cycles device of a worker) import ``bpy``; they are
imported in worker processes only.
"""
