#!/usr/bin/env bash
# The whole CoReEcho pipeline on a laptop CPU, no data needed: installs the requirements into the python3 first
# on the PATH (activate a virtual environment first), writes a small synthetic EchoNet-format dataset, trains
# stage 1 (RnC) and stage 2 (MLP probing) of a tiny UniFormer, then runs the three-clip test.
# Measured on 2 CPU cores: see "Quickstart" in README.md; each step prints how long it took.
source "$(dirname "$0")/demo_common.sh"
DATA=data/synthetic_echonet
OUT=save/demo
CACHE=data/synthetic_echonet_cache
COMMON=(--data_folder "$DATA" --model uniformer_tiny --frames 16 --frequency 4 --num_workers 2
        --cache_dir "$CACHE" --save_root "$OUT" --print_freq 10 --trial 0)

step "install requirements" "$PY" -m pip install -q -r requirements.txt
[ -f "$DATA/FileList.csv" ] || step "synthetic dataset" "$PY" -m datasets.synthetic --out "$DATA" --n 400 --seed 0

step "stage 1 (RnC)" "$PY" train_first_stage.py "${COMMON[@]}" --run_name stage1 --batch_size 8 \
    --learning_rate 1e-3 --weight_decay 1e-4 --lr_decay_rate 0.1 --lr_step_epoch 10 --temp 1.0 --aug --epochs 12
step "stage 2 (MLP probing)" "$PY" train_second_stage.py "${COMMON[@]}" --run_name stage2 \
    --pretrained_weights "$OUT/stage1/best.pth" --batch_size 8 --learning_rate 1e-3 --weight_decay 1e-4 --aug --epochs 3
step "three-clip test" "$PY" test_with_three_clips.py --data_folder "$DATA" --pretrained_weights "$OUT/stage2/best.pth" \
    --path_save_test_files "$OUT/test/test_files.pkl" --model uniformer_tiny --frames 16 --frequency 4 --num_workers 2 \
    --cache_dir "$CACHE"

echo
echo "Done in $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s. Checkpoints: $OUT/stage1, $OUT/stage2;" \
     "test results: $OUT/test (metrics.json, predictions.csv, test_plots.png)"
