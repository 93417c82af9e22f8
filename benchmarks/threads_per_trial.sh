#!/usr/bin/env bash
# Threads a trial, measured (docs/benchmarks.md, "Two threads a trial? What the idle core buys"):
# `signlab train --preset cnn3 --epochs 3` on the full data, N at once with T threads each
# (the variables `config.thread_environment` sets), for (T, N) in (1,2) (2,2) (1,1) (2,1).
# Each training's "3 epochs in S s" line is its training time; "total wall" the batch's.
#
#     SIGNLAB_DATA_DIR=../shared/data/sign_mnist bash benchmarks/threads_per_trial.sh
set -u
OUT=$(mktemp -d)
export MLFLOW_TRACKING_URI=sqlite:///$OUT/mlflow.db MLFLOW_DISABLE_TELEMETRY=true TF_CPP_MIN_LOG_LEVEL=2
batch() {  # batch THREADS PROCESSES
    local t=$1 n=$2 start i
    start=$(date +%s.%N)
    for i in $(seq 1 "$n"); do
        SIGNLAB_THREADS=$t OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t MKL_NUM_THREADS=$t \
            TF_NUM_INTRAOP_THREADS=$t TF_NUM_INTEROP_THREADS=1 \
            signlab train --preset cnn3 --epochs 3 --seed "$i" --experiment threads_per_trial \
            > "$OUT/t${t}x${n}.$i.log" 2>&1 &
    done
    wait
    echo "$t thread(s) x $n process(es): total wall $(echo "$(date +%s.%N) - $start" | bc) s;" \
        "$(grep -ho '3 epochs in [0-9.]* s' "$OUT"/t"${t}"x"${n}".*.log | tr '\n' ' ')"
}
batch 1 2; batch 2 2; batch 1 1; batch 2 1
rm -rf "$OUT"
