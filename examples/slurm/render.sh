#!/bin/sh
# Render the paper's two datasets on a SLURM cluster as job arrays (docs/cluster_render.md).
#
# Run this on a LOGIN node, in the environment where dubfiv is installed (the array
# tasks start the same Python, so the repo and its .venv must be on a shared file
# system, e.g. your home or project folder). It plans the datasets, submits one array
# task per shard of 500 scenes, and returns; nothing runs on the login node after that.
#
#   sh examples/slurm/render.sh                 # submit (or resubmit what is missing)
#   sh examples/slurm/render.sh --status        # shards done/running/failed, img/s, ETA
#
# Rerun the same line after failures, preemption or a full queue: only shards without
# a done marker are submitted again; finished folders are assembled and verified.
# Adapt the partition, time and account to your cluster (sinfo lists partitions).
set -eu

PARTITION=${PARTITION:-cpu}     # a CPU partition; for GPUs see below
ACCOUNT=${ACCOUNT:-}            # some clusters require --slurm-account
TIME=${TIME:-1:00:00}           # per task: 500 scenes at ~1 image/s on 1 core is ~10 min
PARALLEL=${PARALLEL:-256}       # at most this many tasks at once (be kind to the queue)

for config in config/dataset_config.toml config/dataset_config_unbiased.toml; do
    if [ "${1:-}" = "--status" ]; then
        two4two_render_dataset "$config" --status
        continue
    fi
    two4two_render_dataset "$config" --executor slurm \
        --slurm-partition "$PARTITION" ${ACCOUNT:+--slurm-account "$ACCOUNT"} \
        --slurm-time "$TIME" --slurm-cpus-per-task 1 \
        --slurm-array-parallelism "$PARALLEL" --shard-size 500
done

# On GPU nodes instead (one Blender per GPU; Cycles on CUDA or OptiX):
#   two4two_render_dataset config/dataset_config.toml --executor slurm --render-device optix \
#       --slurm-partition gpu --slurm-gpus-per-task 1 --slurm-cpus-per-task 4 --shard-size 2000
# Keep one device per dataset: GPU images differ slightly from CPU images.
