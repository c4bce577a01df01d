#!/usr/bin/env bash
# Copyright 2026 The espnet_ros Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
# Every CUDA path, measured on one CUDA machine in a few minutes; figures written as JSON.
#
#   scripts/gpu_check.sh [OUT_DIR]      (default out/gpu; needs ../shared or models/)
#
# 1. `espnet-ros bench --device cuda --compile` for ESPNet at 1024x512 and 512x256: eager fp32
#    (the authors' way), fp32 and fp16 with folded batch norms and channels-last, CUDA graphs,
#    preprocessing on the GPU against OpenCV on the host, bf16, compile_mode jit fp16 with a CUDA
#    graph; each with label agreement against eager fp32 (OUT_DIR/bench_cuda_*.json).
# 2. TensorRT on the ONNX export, through ONNX Runtime's TensorRT provider (fp16) when
#    onnxruntime-gpu is installed, else with trtexec when it is on the PATH; a missing one is
#    recorded with the reason (OUT_DIR/tensorrt.json).
# 3. Several cameras on one engine (README "Several cameras"): 1, 2, 4 and 6 cameras of mixed
#    sizes, one batch against one call per frame, at 1024x512 and 512x256 fp16
#    (OUT_DIR/cameras_cuda_*.json); batching is where a GPU should pay most.
# Nothing here has run yet: no CUDA machine has been lent to the project.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
OUT="${1:-out/gpu}"
mkdir -p "${OUT}"
PYTHON="${ROOT}/.venv/bin/python"
ESPNET_ROS="${ROOT}/.venv/bin/espnet-ros"
[ -x "${PYTHON}" ] || { PYTHON=python3; ESPNET_ROS=espnet-ros; }
if [ -d ../shared/weights ]; then
  export ESPNET_ROS_MODELS="${ESPNET_ROS_MODELS:-$(cd ../shared/weights && pwd)}"
fi
MODEL=espnet_p2q8_cityscapes
TIMEOUT_S="${GPU_CHECK_TIMEOUT_S:-240}"

"${PYTHON}" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device: torch " + torch.__version__ + " built for CUDA " + str(torch.version.cuda))'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > "${OUT}/gpu.csv" || true

for SIZE in 1024x512 512x256; do
  timeout "${TIMEOUT_S}" "${ESPNET_ROS}" bench --model "${MODEL}" --size "${SIZE}" \
      --device cuda --compile --repeats 200 --warmup 20 --camera 1024x512 \
      --json "${OUT}/bench_cuda_${SIZE}.json" --markdown | tee "${OUT}/bench_cuda_${SIZE}.txt"
done

timeout "${TIMEOUT_S}" "${ESPNET_ROS}" export --model "${MODEL}" --size 1024x512 \
    --out "${OUT}/espnet_1024x512.onnx" --check
OUT="${OUT}" timeout "${TIMEOUT_S}" "${PYTHON}" - <<'PYTHON'
"""Time the ONNX export with TensorRT (fp16), batch 1, 1024x512; write tensorrt.json."""
import json
import os
import shutil
import subprocess
import time

import numpy as np

out = os.environ['OUT']
model = os.path.join(out, 'espnet_1024x512.onnx')
result = {'model': 'espnet_p2q8_cityscapes', 'size': '1024x512', 'batch': 1}
try:
    import onnxruntime
    providers = onnxruntime.get_available_providers()
except ImportError:
    providers = []
if 'TensorrtExecutionProvider' in providers:
    session = onnxruntime.InferenceSession(model, providers=[
        ('TensorrtExecutionProvider', {'trt_fp16_enable': True, 'trt_engine_cache_enable': True,
                                       'trt_engine_cache_path': out}),
        'CUDAExecutionProvider'])
    image = np.random.rand(1, 3, 512, 1024).astype(np.float32)
    binding = session.io_binding()
    binding.bind_cpu_input('image', image)
    binding.bind_output('logits', 'cuda')
    for _ in range(50):  # the first run builds the engine
        session.run_with_iobinding(binding)
    times = []
    for _ in range(500):
        began = time.perf_counter()
        session.run_with_iobinding(binding)
        times.append((time.perf_counter() - began) * 1e3)
    result.update(path='onnxruntime TensorrtExecutionProvider fp16 (host input, device output)',
                  median_ms=float(np.median(times)), p99_ms=float(np.percentile(times, 99)),
                  fps=1e3 / float(np.median(times)), onnxruntime=onnxruntime.__version__)
elif shutil.which('trtexec'):
    times_path = os.path.join(out, 'trtexec_times.json')
    log = subprocess.run(['trtexec', f'--onnx={model}', '--fp16', '--shapes=image:1x3x512x1024',
                          '--iterations=500', '--useCudaGraph', f'--exportTimes={times_path}'],
                         capture_output=True, text=True, check=True).stdout
    compute = [entry['computeMs'] for entry in json.load(open(times_path))]
    result.update(path='trtexec fp16 with a CUDA graph (GPU compute time)',
                  median_ms=float(np.median(compute)), p99_ms=float(np.percentile(compute, 99)),
                  fps=1e3 / float(np.median(compute)), log_tail=log[-2000:])
else:
    result['unavailable'] = ('neither onnxruntime-gpu with the TensorRT provider (providers: '
                             f'{providers}) nor trtexec is installed')
with open(os.path.join(out, 'tensorrt.json'), 'w') as handle:
    json.dump(result, handle, indent=2)
print(json.dumps(result, indent=2))
PYTHON
for SIZE in 1024x512 512x256; do
  timeout "${TIMEOUT_S}" "${PYTHON}" -m espnet_ros.tools.batch_bench --model "${MODEL}" \
      --size "${SIZE}" --device cuda --precision fp16 --cameras 1 2 4 6 --repeats 50 \
      --json "${OUT}/cameras_cuda_${SIZE}.json" | tee "${OUT}/cameras_cuda_${SIZE}.txt"
done
echo "figures in ${OUT}/"
