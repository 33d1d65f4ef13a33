#!/usr/bin/env bash
# Every GPU check and benchmark in one run, for a machine with CUDA (results in ${OUT:-gpu-results}).
#   bash benchmarks/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee "$out/device.txt"
python -m pytest -q tests/test_torch_envs.py tests/test_on_device.py tests/test_optim.py 2>&1 | tail -3 | tee "$out/tests.txt"
python benchmarks/env_throughput.py --device cuda --sizes 4096 65536 1048576 --seconds 0.5 \
    --out "$out/env_throughput.json" | tee "$out/env_throughput.txt"
python benchmarks/cartpole_gpu_vs_sb3.py --device cuda --seeds 0 1 2 \
    --out "$out/cartpole_gpu_vs_sb3.json" | tee "$out/cartpole_gpu_vs_sb3.txt"
python benchmarks/ppo_throughput.py --device cuda --sizes 1024 16384 131072 --sb3-max-envs 0 \
    --out "$out/ppo_throughput.json" | tee "$out/ppo_throughput.txt"
