#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a machine with CUDA (results in ${OUT:-gpu-results}).
#   bash benchmarks/gpu_checks.sh
#
# On a machine that has torch with CUDA but no package registry (Python 3.12), fetch the missing
# pure-Python wheels first, where pip works, into a git-ignored .whl/ that travels with the tree:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl gymnasium==1.4.0 farama-notifications==0.0.4 stable-baselines3==2.9.2 \
#       sb3-contrib==2.9.2
# (about 0.7 MB). This script installs them, and rlkit itself without build isolation, when
# .whl/ exists.
#
# Each step runs on its own: a step that fails is reported at the end (and in $out/failed.txt)
# and the steps after it still run. The exit status is that of the first failure. Name steps to
# run only those (default: all):
#   bash benchmarks/gpu_checks.sh tests recurrent td3_wall
# Steps: tests, env_throughput, cartpole_gpu_vs_sb3, ppo_throughput, recurrent (PPO + LSTM on
# the device against sb3-contrib's RecurrentPPO, 5 seeds, reference trials side by side on the
# CPU cores), td3_wall (benchmarks/ddpg_vs_sb3.py --part wall, trials side by side),
# a3c_scaling (A3C's env steps/s with 1-16 worker processes on the machine's CPU cores; Ray is
# not among the wheels, so its backend is measured on the development machine only).
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
step() {  # step NAME COMMAND...: run, append to $out/log.txt, time it, remember a failure
    local name=$1; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" 2>&1 | tee -a "$out/log.txt"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc after $((SECONDS - t0)) s"
    if [ "$rc" -ne 0 ]; then
        echo "$name (exit $rc)" >> "$out/failed.txt"
        [ "$status" -ne 0 ] || status=$rc
    fi
}

wanted() { [ "${#selected[@]}" -eq 0 ] || [[ " ${selected[*]} " == *" $1 "* ]]; }
selected=("$@")
scratch=$(mktemp -d)

recurrent() {  # rlkit on the GPU one seed after another; the CPU references side by side
    python3 benchmarks/recurrent_vs_sb3.py --device cuda --variants rlkit-native \
        --seeds 0 1 2 3 4 --out "$scratch/rec_native.json" > "$scratch/rec_native.log" 2>&1 &
    local pids=($!)
    for s in 0 1 2 3 4; do
        python3 benchmarks/recurrent_vs_sb3.py --variants sb3 rlkit-gym-zoo --seeds "$s" \
            --out "$scratch/rec_cpu_$s.json" > "$scratch/rec_cpu_$s.log" 2>&1 &
        pids+=($!)
    done
    local rc=0
    for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
    tail -n 3 "$scratch"/rec_*.log
    python3 benchmarks/recurrent_vs_sb3.py --merge "$scratch"/rec_*.json \
        --out "$out/recurrent_vs_sb3.json" --markdown "$out/recurrent_vs_sb3.md" || rc=1
    return $rc
}

wanted tests && step tests python3 -m pytest -q -p no:cacheprovider -n 4 tests/test_torch_envs.py \
    tests/test_on_device.py tests/test_optim.py tests/test_recurrent.py tests/test_ddpg.py \
    tests/test_recurrent_dqn.py tests/test_recurrent_ddpg.py
wanted env_throughput && step env_throughput python3 benchmarks/env_throughput.py --device cuda \
    --sizes 4096 65536 1048576 --seconds 0.5 --out "$out/env_throughput.json"
wanted cartpole_gpu_vs_sb3 && step cartpole_gpu_vs_sb3 python3 benchmarks/cartpole_gpu_vs_sb3.py \
    --device cuda --seeds 0 1 2 --out "$out/cartpole_gpu_vs_sb3.json"
wanted ppo_throughput && step ppo_throughput python3 benchmarks/ppo_throughput.py --device cuda \
    --sizes 1024 16384 131072 --sb3-max-envs 0 --out "$out/ppo_throughput.json"
if wanted recurrent && wanted td3_wall; then  # independent: side by side
    step td3_wall python3 benchmarks/ddpg_vs_sb3.py --part wall --seeds 0 1 2 --jobs 6 \
        --out "$out/td3_wall.json" --markdown "$out/td3_wall.md" > "$scratch/td3_wall.log" 2>&1 &
    wall_pid=$!
    step recurrent recurrent
    wait "$wall_pid"; cat "$scratch/td3_wall.log"
else
    wanted recurrent && step recurrent recurrent
    wanted td3_wall && step td3_wall python3 benchmarks/ddpg_vs_sb3.py --part wall --seeds 0 1 2 \
        --jobs 6 --out "$out/td3_wall.json" --markdown "$out/td3_wall.md"
fi
wanted a3c_scaling && step a3c_scaling python3 benchmarks/a3c_vs_sb3.py --part scaling \
    --seeds 0 1 2 --budget 200000 --contenders sb3-a2c rlkit-a2c rlkit-a3c-1 rlkit-a3c-2 \
    rlkit-a3c-4 rlkit-a3c-8 rlkit-a3c-16 --out "$out/a3c_scaling.json" \
    --markdown "$out/a3c_scaling.md" --plot "$out/a3c_scaling.png"
echo "failed steps:"; cat "$out/failed.txt"
[ -s "$out/failed.txt" ] && status=1
exit $status
