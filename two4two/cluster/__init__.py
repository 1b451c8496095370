"""Render a Two4Two dataset on a SLURM cluster as a job array (through submitit).

The plan of every folder is cut into shards (:mod:`~two4two.cluster.shards`); one
array task renders one shard (:mod:`~two4two.cluster.task`);
:mod:`~two4two.cluster.submit` submits, follows and assembles, and
:mod:`~two4two.cluster.status` reports. The assembled dataset is the same, byte for
byte, as a local render of the same config (``docs/cluster_render.md``).
"""
