#!/bin/bash
# Render a seed list as a Slurm job array: one shard of the seeds per array task, on one GPU.
#
#   sbatch --array=0-7 deploy/slurm/render-array.sh best.pt 0-999999 renders/ --truncation 0.7
#   sbatch --array=0-7 deploy/slurm/render-array.sh export/m 0-999999 renders/ --backend trt
#   gantool merge-shards renders/          # once the array has finished
#
# Task I of N (gantool reads SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT) draws block I of N
# of the seed list into renders/shard-IIIII-of-NNNNN/. A requeued or repeated task skips the
# images it already wrote; a preempted one stops on SIGTERM with whole, listed files.
#SBATCH --job-name=gantool-render
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=16
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --output=gantool-render-%A_%a.log
set -euo pipefail
usage="usage: sbatch --array=0-N $0 MODEL SEEDS OUT [gantool generate options]"
model=${1:?$usage}
seeds=${2:?$usage}
out=${3:?$usage}
shift 3
exec gantool generate "$model" --seeds "$seeds" --out "$out" --no-progress "$@"
