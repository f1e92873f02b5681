#!/usr/bin/env bash
# Prepare the GPU reproduction (benchmarks/gpu_tiger_beauty.py) for the device machine. Run HERE,
# in the checkout that the device tool sends, before the device call:
#
#     bash benchmarks/gpu_stage.sh
#
# The device machine has python3 3.12 with torch (CUDA), transformers and pytest, but no network,
# no RecBole, and numpy 2 (RecBole 1.2.1 needs numpy < 2: its Config uses np.float_). This fetches,
# as cp312 manylinux wheels into .whl/ (git-ignored), the packages it lacks at this project's pins
# (constraints.txt): recbole, colorlog, texttable, numpy, pandas (+ pytz, tzdata), transformers
# (the version the package is tested with here; gpu_run.sh falls back to the machine's if it does
# not import there). About 46 MB, inside the tool's 64 MiB. If the machine's scipy/scikit-learn
# refuse numpy 1.26, gpu_run.sh uses its numpy 2 through benchmarks/numpy1_aliases.py instead.
#
# The data is NOT copied: .gpu_data is a git-ignored symbolic link to ../shared/data, and the device
# call carries the two files through it (the tool copies a carried path that runs through a link):
#
#     run(command="bash benchmarks/gpu_run.sh", timeout_s=600,
#         carry=[".whl", ".gpu_data/beauty/beauty.inter", ".gpu_data/beauty/beauty.sid-rqvae.json"])
#
# Then copy $OUT's gpu_tiger_beauty.{json,md} into benchmarks/results/ and commit them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}  # any python with pip that reaches the package index
pins=$(grep -iE '^(recbole|colorlog|texttable|numpy|pandas|pytz|tzdata|transformers)==' constraints.txt)
[ "$(echo "$pins" | wc -l)" -eq 8 ] || { echo "error: constraints.txt lacks one of the 8 pins: $pins" >&2; exit 1; }
rm -rf .whl && mkdir -p .whl
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl $pins
data=$(cd .. && pwd)/shared/data
[ -f "$data/beauty/beauty.inter" ] && [ -f "$data/beauty/beauty.sid-rqvae.json" ] \
    || { echo "error: $data/beauty/{beauty.inter,beauty.sid-rqvae.json} not found" >&2; exit 1; }
ln -sfn "$data" .gpu_data
for p in .whl .gpu_data; do git check-ignore -q "$p" || { echo "error: .whl or .gpu_data is not git-ignored (see .gitignore)" >&2; exit 1; }; done
ls -la .whl; du -sh .whl; ls -laL .gpu_data/beauty/beauty.inter .gpu_data/beauty/beauty.sid-rqvae.json
echo "staged. Device call: run(command=\"bash benchmarks/gpu_run.sh\", timeout_s=600, carry=[\".whl\", \".gpu_data/beauty/beauty.inter\", \".gpu_data/beauty/beauty.sid-rqvae.json\"])"
