#!/usr/bin/env bash
# Table 2 (Beauty and Sports, 3 seeds, SASRec and FAME warm + residual) and the Beauty sweeps in one go,
# for a machine with a CUDA GPU (the device tool). Same code and protocol as on the CPU; every run is
# resumable, so a cut command can simply be started again. Usage: bash bench/table2_gpu.sh [data folder]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/amazon}
# the two data sets share the GPU: each run keeps it far from full (d = 64)
python bench/reproduce.py --data "$DATA/Beauty.txt" --seeds 0 1 2 --fame-warm --fame-residual --device cuda &
python bench/reproduce.py --data "$DATA/Sports_and_Outdoors.txt" --seeds 0 1 2 --fame-warm --fame-residual --device cuda &
wait
python bench/sweep.py --data "$DATA/Beauty.txt" --device cuda
ls bench/results/reproduce-*.json bench/results/sweep-*.json
