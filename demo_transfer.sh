#!/usr/bin/env bash
# Transfer learning on a laptop CPU, no data needed: writes a small synthetic CAMUS set and a small synthetic
# HMC-QU set, each in the layout of its public release (datasets.synthetic.transfer: beating ventricles; CAMUS
# ED->ES half cycles, NIfTI + Info_*.cfg; HMC-QU AVIs with the published A4C.xlsx / A2C.xlsx label sheets: two
# header rows, MI / non-MI words, names as typed, the footnote), takes the tiny stage-1 (RnC) checkpoint of
# demo.sh (save/demo/stage1/best.pth) - or, without it, trains a tiny stage 1 for 3 passes on 60 synthetic
# EchoNet videos, which only shows the mechanics (so few steps have not learnt EF yet) - then compares that
# checkpoint with random weights ('none') by a linear head on frozen embeddings: EF on the 10 CAMUS folds (4CH
# sequences), MI on 5 HMC-QU folds (clips over the annotated cycles), and prints the tables. Each step prints how
# long it took; a second run finds the data, the checkpoint and the embeddings (cache) and only trains the heads.
# Install the requirements first (python3 -m pip install -r requirements.txt, or run demo.sh once).
source "$(dirname "$0")/demo_common.sh"
CAMUS=data/synthetic_camus
HMCQU=data/synthetic_hmcqu
ECHONET=data/synthetic_echonet_small
OUT=save/demo_transfer
STAGE1=save/demo/stage1/best.pth  # written by demo.sh (16-frame clips, uniformer_tiny)

[ -f "$CAMUS/database_nifti/patient0050/Info_2CH.cfg" ] || \
    step "synthetic CAMUS (50 patients, 2 views)" "$PY" -m datasets.synthetic.transfer --kind camus --out "$CAMUS" \
        --n 50 --seed 0
[ -f "$HMCQU/A2C.xlsx" ] || \
    step "synthetic HMC-QU (40 patients, A4C + A2C, published label sheets)" "$PY" -m datasets.synthetic.transfer \
        --kind hmcqu --out "$HMCQU" --n 40 --seed 0

if [ -f "$STAGE1" ]; then
    echo "== stage 1: reusing $STAGE1 (from demo.sh)"
else
    echo "== no $STAGE1 (run demo.sh for a stage 1 trained 12 epochs): a 3-pass stage 1 instead, which has not" \
         "learnt EF yet - expect both checkpoints near the baseline"
    STAGE1=$OUT/stage1/best.pth
    [ -f "$ECHONET/FileList.csv" ] || \
        step "synthetic EchoNet (60 videos)" "$PY" -m datasets.synthetic --out "$ECHONET" --n 60 --seed 0
    [ -f "$STAGE1" ] || step "tiny stage 1 (RnC, 3 passes)" "$PY" train_first_stage.py --data_folder "$ECHONET" \
        --model uniformer_tiny --frames 16 --frequency 4 --num_workers 2 --cache_dir "${ECHONET}_cache" \
        --save_root "$OUT" --run_name stage1 --batch_size 8 --learning_rate 1e-3 --weight_decay 1e-4 \
        --lr_step_epoch -1 --temp 1.0 --aug --epochs 2 --trial 0 --print_freq 10
fi

step "linear transfer to CAMUS: stage 1 vs. none" "$PY" transfer_learning.py --dataset camus --data_folder "$CAMUS" \
    --pretrained_weights "$STAGE1" none --model uniformer_tiny --frames 16 --mode linear \
    --head_weight_decay 1 --num_workers 2 --output_dir "$OUT/camus_linear"
step "linear transfer to HMC-QU (MI): stage 1 vs. none" "$PY" transfer_learning.py --dataset hmcqu \
    --data_folder "$HMCQU" --pretrained_weights "$STAGE1" none --model uniformer_tiny --frames 16 --mode linear \
    --head_weight_decay 1 --num_workers 2 --output_dir "$OUT/hmcqu_linear"

echo
echo "Done in $(( (SECONDS - START) / 60 )) min $(( (SECONDS - START) % 60 )) s. Results: $OUT/camus_linear" \
     "and $OUT/hmcqu_linear" \
     "(summary.md, results.json, predictions.csv, plots/); a second run reuses the cached embeddings."
