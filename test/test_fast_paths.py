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


"""Mixed precision, labels computed in the compiled graph, kept host memory, bench workers."""

import copy
from pathlib import Path
import subprocess
import sys
import textwrap
from typing import Callable

import numpy as np
import pytest
import torch
from torch import nn

from espnet_ros.runtime import head
from espnet_ros.runtime.engine import EngineConfig, EngineConfigError, SegmentationEngine
from espnet_ros.runtime.mixed_precision import (apply_mixed_precision, BFloat16Conv,
                                                cpu_bf16_supported, supports_mixed_precision)
from espnet_ros.runtime.phase_labels import interleave_phases, phase_planes
from espnet_ros.runtime.postprocess import class_labels
from espnet_ros.runtime.runners import TorchRunner
from espnet_ros.tools import benchmark, variants
from espnet_ros.tools.benchmark_worker import prepare_in_worker, WorkerError
from espnet_ros.zoo.registry import get_spec

CPU = torch.device('cpu')
Pretrained = Callable[[str], nn.Module]  # the conftest fixture: registry name -> network
SIZE = (512, 256)  # the target resolution for espnet_p2q8_cityscapes
needs_bf16 = pytest.mark.skipif(not cpu_bf16_supported(), reason='no native bf16 on this CPU')


def street_batch(network: nn.Module, name: str, image: np.ndarray) -> torch.Tensor:
    engine = SegmentationEngine(get_spec(name), network, EngineConfig(input_size=SIZE))
    return engine.preprocess([image], 'bgr')


@pytest.mark.parametrize('memory_format', (torch.contiguous_format, torch.channels_last))
def test_compiled_class_labels_equal_argmax_including_ties(memory_format) -> None:
    torch.manual_seed(0)
    # Small integers make many ties: the first largest class must win, as with argmax.
    logits = torch.randint(0, 4, (2, 20, 16, 24)).float().contiguous(
        memory_format=memory_format)
    compiled = torch.compile(class_labels, dynamic=False)
    labels = compiled(logits)
    assert labels.dtype == torch.uint8 and labels.shape == (2, 16, 24)
    assert torch.equal(labels, logits.argmax(1).to(torch.uint8))
    assert torch.equal(class_labels(logits), labels)


@pytest.mark.parametrize('bias', (False, True))
def test_phase_planes_are_the_transposed_convolution_class_by_class(bias: bool) -> None:
    torch.manual_seed(0)
    last = nn.ConvTranspose2d(6, 5, 2, stride=2, bias=bias)
    features = torch.randn(2, 6, 3, 4).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = last(features)  # 2 x 5 x 6 x 8
        planes = phase_planes(features, last.weight, last.bias)  # (2 * 4) x 5 x 3 x 4
        per_class = torch.stack([interleave_phases(planes[:, index], 2)
                                 for index in range(5)], 1)
    assert planes.shape == (8, 5, 3, 4)
    torch.testing.assert_close(per_class, expected, rtol=1e-5, atol=1e-5)


def test_only_a_plain_2x2_stride_2_last_layer_is_split(pretrained: Pretrained) -> None:
    network = pretrained('espnet_p2q8_cityscapes')
    split = head.upsampling_classifier(network)
    assert split is not None and split[1] is network.classifier
    assert head.upsampling_classifier(pretrained('espnet_c_p2q8_cityscapes')) is None
    other = copy.deepcopy(network)  # the fixture's networks are shared
    other.classifier = nn.ConvTranspose2d(20, 20, 2, stride=2, output_padding=1)
    assert head.upsampling_classifier(other) is None


def _refuse(features: torch.Tensor) -> torch.Tensor:
    raise AssertionError('the head ran the transposed convolution')


@pytest.mark.parametrize('name', ('espnet_p2q8_cityscapes', 'espnet_p2q8_camvid'))
def test_the_labels_head_gives_the_labels_of_the_logits(name: str, pretrained: Pretrained,
                                                        street_bgr: np.ndarray) -> None:
    network = pretrained(name).eval()
    batch = torch.cat([street_batch(network, name, street_bgr)] * 2)
    batch[1] = batch[1].flip(-1)  # two different images in one batch
    with torch.no_grad():
        logits = network(batch)
        # The heads take the last layer's weights, never its output (channels-last logits).
        split = copy.deepcopy(network)
        split.classifier.forward = _refuse
        labels = head.Labels(split)(batch)
        both = head.LabelsAndConfidence(split)(batch)
    # The same products summed in another order: only near-ties may land elsewhere.
    assert (labels == head.labels(logits, batch.shape[-2:])).float().mean() > 0.9999
    assert (both[0] == labels).float().mean() > 0.9999
    torch.testing.assert_close(both[1], head.confidence(logits), rtol=1e-4, atol=1e-5)


def test_mixed_precision_wraps_exactly_the_named_convolutions(pretrained: Pretrained) -> None:
    espnet = pretrained('espnet_p2q8_cityscapes')
    names = espnet.bf16_tolerant_convolutions()
    # 5 dilated branches in each of the p=2 + q=8 residual ESPs, and the decoder's merge.
    assert len(names) == 5 * (2 + 8) + 1 and 'level1_merge.conv' in names
    mixed = apply_mixed_precision(TorchRunner(espnet, device=CPU,
                                              dtype=torch.float32).network)
    wrapped = [name for name, unit in mixed.named_modules() if isinstance(unit, BFloat16Conv)]
    assert wrapped == names
    assert all(unit.conv.weight.dtype == torch.bfloat16 for unit in mixed.modules()
               if isinstance(unit, BFloat16Conv))
    encoder = pretrained('espnet_c_p2q8_cityscapes')
    assert len(encoder.bf16_tolerant_convolutions()) == 5 * (2 + 8)
    v2 = pretrained('espnetv2_s0.5_cityscapes_512x256')
    assert not supports_mixed_precision(v2)
    with pytest.raises(ValueError, match='does not name bf16-tolerant convolutions'):
        apply_mixed_precision(v2)


@needs_bf16
@pytest.mark.parametrize('name', ('espnet_p2q8_cityscapes', 'espnet_p2q8_camvid'))
def test_mixed_labels_agree_with_fp32(name: str, pretrained: Pretrained,
                                      street_bgr: np.ndarray) -> None:
    batch = street_batch(pretrained(name), name, street_bgr)
    fp32 = TorchRunner(pretrained(name), device=CPU, dtype=torch.float32)
    mixed = TorchRunner(pretrained(name), device=CPU, dtype=torch.float32,
                        mixed=True)
    agreement = (mixed.labels(batch) == fp32.labels(batch)).float().mean().item()
    assert 0.995 <= agreement < 1.0  # bf16 did change something, and little


@needs_bf16
def test_compiled_runner_labels_match_its_logits(pretrained: Pretrained,
                                                 street_bgr: np.ndarray) -> None:
    name = 'espnet_p2q8_cityscapes'
    batch = street_batch(pretrained(name), name, street_bgr)
    compiled = TorchRunner(pretrained(name), device=CPU, dtype=torch.float32,
                           compile_network=True, mixed=True)
    eager = TorchRunner(pretrained(name), device=CPU, dtype=torch.float32,
                        mixed=True)
    labels = compiled.labels(batch)
    assert labels.shape == (1, SIZE[1], SIZE[0]) and labels.dtype == torch.uint8
    # The same arithmetic fused differently: bf16 roundings may land on other sides.
    assert (labels == eager.labels(batch)).float().mean() > 0.999


def resolved(precision: str, *, backend: str = 'auto', compile_mode: str = 'eager',
             device: str = 'cpu', mixed_supported: bool = True) -> tuple[str, object]:
    """Return the runner's and the cached graph's precision the one configuration check gives."""
    config = EngineConfig(precision=precision, backend=backend, compile_mode=compile_mode,
                          device=device)
    settings = config.resolve(get_spec('espnet_p2q8_cityscapes'),
                              mixed_supported=mixed_supported)
    return settings.precision, settings.graph_precision


def test_precision_auto_and_mixed_refusals(pretrained: Pretrained) -> None:
    if torch.cuda.is_available():
        assert resolved('auto', device='cuda')[0] == 'fp16'
        with pytest.raises(EngineConfigError, match='on CUDA use fp16'):
            resolved('mixed', device='cuda')
    assert resolved('auto', backend='torch') == ('fp32', None)
    expected = 'mixed' if cpu_bf16_supported() else 'fp32'
    assert resolved('auto', backend='torch-compile')[0] == expected
    assert resolved('auto', compile_mode='jit')[0] == expected
    assert resolved('auto', compile_mode='jit', mixed_supported=False)[0] == 'fp32'
    # compile_mode background: eager fp32 at once, the compiled graph in mixed where it can.
    assert resolved('auto', compile_mode='background') == ('fp32', expected)
    assert resolved('fp32', compile_mode='cached') == ('fp32', 'fp32')
    assert resolved('auto', backend='torch', compile_mode='cached') == ('fp32', None)
    name = 'espnetv2_s0.5_cityscapes_512x256'
    with pytest.raises(EngineConfigError, match='this one does not'):
        SegmentationEngine(get_spec(name), pretrained(name), EngineConfig(precision='mixed'))


FAULTS_PER_FRAME = textwrap.dedent("""
    import resource, sys, threading, torch
    from espnet_ros.runtime.host_memory import retain_freed_memory
    from espnet_ros.zoo.registry import load
    mode, where, weights_dir = sys.argv[1:]
    if mode == 'retain':
        assert retain_freed_memory()
    network = load('espnet_p2q8_cityscapes', weights_dir)
    # A worker thread (like the node's inference thread) at 1024 x 512 allocates from a
    # thread arena, whose 64 MB heaps glibc unmaps when they empty.
    image = torch.randn(1, 3, 512, 1024) if where == 'thread' else torch.randn(1, 3, 256, 512)
    def frames():
        with torch.inference_mode():
            for _ in range(8 if where == 'thread' else 3):  # till the heaps stop growing
                network(image)
            before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            for _ in range(5):
                network(image)
        print((resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before) / 5)
    thread = threading.Thread(target=frames) if where == 'thread' else None
    if thread is None:
        frames()
    else:
        thread.start()
        thread.join()
""")


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='glibc malloc settings')
def test_retained_host_memory_ends_the_page_faults_of_each_frame(weights_dir: Path) -> None:
    def faults(mode: str, where: str = 'main') -> float:
        run = subprocess.run([sys.executable, '-c', FAULTS_PER_FRAME, mode, where,
                              str(weights_dir)],
                             check=True, capture_output=True, text=True, timeout=120)
        return float(run.stdout)
    # With glibc's defaults the frame's large maps go back to the kernel when freed, and the
    # next frame faults their pages in again (about 10,000 a frame here; 0 to 200 retained).
    default = faults('default')
    assert default > 1000
    assert faults('retain') < default / 20
    # In a worker thread at 1024x512: thousands a frame with the defaults; retained, 0 to a
    # few hundred here (one CI run saw 141), depending on where the heaps fell.
    thread_default = faults('default', 'thread')
    assert faults('retain', 'thread') < thread_default / 10, thread_default


THREADS_WHILE_INFERRING = textwrap.dedent("""
    import os, sys, threading, torch
    from espnet_ros.runtime.process import run_on_passing_thread
    from espnet_ros.zoo.registry import load
    where, weights_dir = sys.argv[1:]
    network = load('espnet_c_p2q3_cityscapes', weights_dir)
    image = torch.randn(1, 3, 256, 512)
    def warm_up():
        with torch.inference_mode():
            network(image)
    if where == 'passing':
        run_on_passing_thread(warm_up)
    else:  # a thread that stays, like an executor's worker that built the engine
        done, keep = threading.Event(), threading.Event()
        threading.Thread(target=lambda: (warm_up(), done.set(), keep.wait()),
                         daemon=True).start()
        done.wait()
    counted = {}
    def frames():
        with torch.inference_mode():
            network(image)
            counted['threads'] = len(os.listdir('/proc/self/task'))
    inference = threading.Thread(target=frames)
    inference.start()
    inference.join()
    print(counted['threads'], torch.get_num_threads())
""")


@pytest.mark.skipif(not sys.platform.startswith('linux') or torch.get_num_threads() < 2,
                    reason='threads of /proc; a parallel CPU thread pool')
def test_engine_built_on_a_passing_thread_leaves_the_inference_thread_spinning(
        weights_dir: Path) -> None:
    """
    A thread that ran a parallel operation and stays keeps an OpenMP team of its own.

    Two teams on the cores make libgomp's barriers sleep instead of spin (about 240 times a
    frame, docs/performance.md); a passing thread's team ends with it. Counted as the
    process's threads while the inference thread runs, which load cannot change (the sleeps
    themselves vary with what else runs on the cores).
    """
    def threads(where: str) -> tuple[int, int]:
        run = subprocess.run([sys.executable, '-c', THREADS_WHILE_INFERRING, where,
                              str(weights_dir)], check=True, capture_output=True, text=True,
                             timeout=120)
        count, team = run.stdout.split()
        return int(count), int(team)
    (kept, team), (passing, _) = threads('kept'), threads('passing')
    # The kept thread itself and its team's workers (a team of N has N - 1 of them).
    assert kept - passing == 1 + (team - 1), (kept, passing, team)


def test_bench_worker_times_and_labels_in_its_own_process(pretrained: Pretrained,
                                                          street_bgr: np.ndarray) -> None:
    name = 'espnet_c_p2q3_cityscapes'
    spec, size = get_spec(name), (128, 64)
    message = variants.camera_message(street_bgr, (256, 128))
    worker = prepare_in_worker(spec, pretrained(name), variants.baseline('cpu'),
                               size, message, warmup=1)
    try:
        assert worker.time_call('network') > 0 and worker.time_call('frame') > 0
        here = variants.prepare_here(spec, pretrained(name),
                                     variants.baseline('cpu'), size, message, warmup=1)
        images = [street_bgr, street_bgr[::-1]]
        assert benchmark.agreement(worker.labels(images), here.labels(images)) == 1.0
    finally:
        worker.close()
    broken = variants.Variant('broken', 'cpu', 'torch', precision='fp16',
                              retain_host_memory=False)
    with pytest.raises(WorkerError, match='precision fp16 is for CUDA'):
        prepare_in_worker(spec, pretrained(name), broken, size, message, warmup=1)
