#!/usr/bin/env bash
# The prepared GPU run of issue 20 (bench/gpu/README.md, "Prepared run"): the shipped lite
# model's image encoder and RoI decoder trained with the synthetic-lesion samples under the
# unified recipe, 7 minutes, then the CUDA check of the result. Not run yet (no GPU was lent).
#
# Here, first:
#   .venv/bin/python bench/gpu/pack_sources.py \
#       --config bench/experiments/configs/lite_sam_gpu_encoder_lesion.yaml --out .gpu/sources.npz
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl pydicom==3.0.2 \
#       pydantic==2.14.3 pydantic_core==2.50.4 annotated_types==0.8.0 \
#       typing_inspection==0.4.5 segment_anything==1.0
# On the device (one `run` call with carry [.gpu, .whl] and timeout_s 600):
#   bash bench/gpu/retrain_unified.sh
# Back here: $OUT/enc_lesion/lite_sam.{safetensors,json} -> runs/lite_sam_gpu_encoder_lesion/,
# then validate and choose by the rule written before the run
# (bench/experiments/notes/lite_model_selection.md, "Issue 20: GPU candidate"):
#   .venv/bin/python bench/prompt_accuracy.py --structures validation --draws 5 \
#       --model runs/lite_sam_gpu_encoder_lesion/lite_sam.safetensors \
#       --out-stem ../experiments/results/prompt_validation_gpu_encoder_lesion
set -euo pipefail
: "${OUT:?run on the device machine, where OUT names the folder that comes back}"
bash bench/gpu/train_candidates.sh 7 \
  "enc_lesion=bench/experiments/configs/lite_sam_gpu_encoder_lesion.yaml::model.checkpoint=medseg/weights/lite_sam.safetensors"
PYTHONPATH=/tmp/site:$PWD python3 bench/gpu/cuda_check.py --sources .gpu/sources.npz \
  --out "$OUT/cuda_check_encoder_lesion.json" --model "$OUT/enc_lesion/lite_sam.safetensors"
