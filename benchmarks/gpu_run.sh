#!/usr/bin/env bash
# Runs ON THE DEVICE MACHINE (one H200): TIGER on Beauty, benchmarks/gpu_tiger_beauty.py. Staged by
# benchmarks/gpu_stage.sh (read it first); the device call is
#
#     run(command="bash benchmarks/gpu_run.sh", timeout_s=600,
#         carry=[".whl", ".gpu_data/beauty/beauty.inter", ".gpu_data/beauty/beauty.sid-rqvae.json"])
#
# It installs the carried wheels into /tmp/site (first on PYTHONPATH: numpy 1.26 shadows the
# machine's numpy 2), checks the imports (falling back to the machine's numpy 2 with
# benchmarks/numpy1_aliases.py if its scipy/scikit-learn need it), runs tests/test_beam_search.py on the CPU beside the GPU
# run (the step decoder against transformers' T5 of that machine), then the script with its default
# wall budget (--minutes 8.0; ~30 s of installs and checks come before it, so the whole command ends
# near 8.5 min, inside timeout_s=600). Everything lands in $OUT (5 files): gpu_tiger_beauty.{json,md}
# (written after the main run and again after the constrained re-test), gpu_run.log, recbole.log,
# cpu_tests.log. Extra arguments go to the script (e.g. --minutes 7).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/saved/gpu_out}
mkdir -p "$OUT"

main() {
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}  # the machine's python3 holds torch with CUDA
echo "== $(date -u) $(uname -m); $($PY -V)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
WHEELS=${WHEELS:-.whl}  # WHEELS=none: use the packages of $PY as they are (a local dry run)
LAUNCH=""               # or benchmarks/numpy1_aliases.py: RecBole on the machine's NumPy 2
cat >/tmp/gpu_env_check.py <<'PYEOF'
import numpy, pandas, scipy.sparse, sklearn.metrics, torch, transformers, recbole, recbole_genrec
from recbole_genrec.config import Config  # RecBole's Config runs its numpy-alias settings
Config(model="TIGER", dataset="beauty", config_file_list=["properties/dataset/beauty.yaml"],
       config_dict={"data_path": ".gpu_data", "state": "ERROR", "checkpoint_dir": "/tmp/gpu_check"})
print("numpy", numpy.__version__, "pandas", pandas.__version__, "torch", torch.__version__,
      "cuda", torch.cuda.is_available(), "transformers", transformers.__version__, "recbole", recbole.__version__,
      "recbole_genrec", recbole_genrec.__file__)
PYEOF
check() { $PY $LAUNCH /tmp/gpu_env_check.py 2>&1 | tail -4; return "${PIPESTATUS[0]}"; }
if compgen -G "$WHEELS/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || return 1
    export PYTHONPATH=/tmp/site:$PWD
    if ! $PY -c "import transformers" 2>/dev/null; then
        echo "carried transformers does not import here; using the machine's"
        rm -rf /tmp/site/transformers /tmp/site/transformers-*.dist-info
    fi
    # The project's pins (numpy 1.26, pandas 2.2) first; if the machine's compiled packages (scipy,
    # scikit-learn) need its NumPy 2, use that NumPy with RecBole's old aliases restored, then also
    # the machine's pandas.
    if ! check; then
        echo "== carried numpy does not work with this machine's packages: machine's numpy + numpy1_aliases.py"
        rm -rf /tmp/site/numpy /tmp/site/numpy-*.dist-info /tmp/site/numpy.libs
        LAUNCH=benchmarks/numpy1_aliases.py
        if ! check; then
            echo "== and the machine's pandas"
            rm -rf /tmp/site/pandas /tmp/site/pandas-*.dist-info /tmp/site/pandas.libs
            check || return 1
        fi
    fi
else
    export PYTHONPATH=$PWD
    echo "no wheels in $WHEELS: using the packages of $PY as they are (RecBole must be installed)"
    check || return 1
fi
[ -f .gpu_data/beauty/beauty.inter ] || { echo "error: .gpu_data/beauty/beauty.inter not carried"; return 1; }
CUDA_VISIBLE_DEVICES= OMP_NUM_THREADS=2 timeout 240 $PY -m pytest -q -x tests/test_beam_search.py \
    >"$OUT/cpu_tests.log" 2>&1 &
tests_pid=$!
$PY $LAUNCH benchmarks/gpu_tiger_beauty.py --data-path .gpu_data --sid-file .gpu_data/beauty/beauty.sid-rqvae.json \
    --out "$OUT" "$@"
rc=$?
log=$(ls -t log/TIGER/*.log 2>/dev/null | head -1)
[ -n "$log" ] && cp "$log" "$OUT/recbole.log"
for _ in $(seq 30); do kill -0 "$tests_pid" 2>/dev/null || break; sleep 1; done
kill "$tests_pid" 2>/dev/null  # still running 30 s after the script: stop it (timeout passes it on)
wait "$tests_pid"; echo "rc=$?" >>"$OUT/cpu_tests.log"
echo "== script rc=$rc; CPU tests: $(tail -2 "$OUT/cpu_tests.log" | tr '\n' ' ')"
ls -la "$OUT"
return $rc
}

main "$@" 2>&1 | tee "$OUT/gpu_run.log"
exit "${PIPESTATUS[0]}"
