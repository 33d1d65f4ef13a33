#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a machine with CUDA (results in ${OUT:-gpu-results}).
#   bash benchmarks/gpu_checks.sh
#
# On a machine that has torch with CUDA but no package registry (Python 3.12), fetch the missing
# pure-Python wheels first, where pip works, into a git-ignored .whl/ that travels with the tree:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl gymnasium==1.4.0 farama-notifications==0.0.4 stable-baselines3==2.9.2
# (about 0.7 MB). This script installs them, and rlkit itself without build isolation, when
# .whl/ exists.
#
# Each step runs on its own: a step that fails is reported at the end (and in $out/failed.txt)
# and the steps after it still run. The exit status is that of the first failure.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || exit
    export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH"
fi
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(), torch.__version__)" | tee "$out/device.txt" || exit

status=0
: > "$out/failed.txt"
step() {  # step NAME COMMAND...: run, tee to $out/NAME.txt, time it, remember a failure
    local name=$1; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ]; then
        echo "$name (exit $rc)" >> "$out/failed.txt"
        [ "$status" -ne 0 ] || status=$rc
    fi
}

step tests python3 -m pytest -q -p no:cacheprovider tests/test_torch_envs.py tests/test_on_device.py tests/test_optim.py
step env_throughput python3 benchmarks/env_throughput.py --device cuda --sizes 4096 65536 1048576 \
    --seconds 0.5 --out "$out/env_throughput.json"
step cartpole_gpu_vs_sb3 python3 benchmarks/cartpole_gpu_vs_sb3.py --device cuda --seeds 0 1 2 \
    --out "$out/cartpole_gpu_vs_sb3.json"
step ppo_throughput python3 benchmarks/ppo_throughput.py --device cuda --sizes 1024 16384 131072 \
    --sb3-max-envs 0 --out "$out/ppo_throughput.json"
echo "failed steps:"; cat "$out/failed.txt"
exit $status
