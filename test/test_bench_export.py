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


"""ONNX export of every registry model, the ``export`` and ``bench`` commands end to end."""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from espnet_ros.cli import bench, main as cli_main
from espnet_ros.runtime.engine import EngineConfig, SegmentationEngine
from espnet_ros.runtime.runners import export_onnx, onnx_session
from espnet_ros.tools import benchmark, procfs, variants
from espnet_ros.zoo.registry import get_spec, load, registry

# Small, and a multiple of 32 so that every family accepts it.
SIZE = (256, 128)
REQUIRED_KEYS = {'model', 'size', 'device', 'precision', 'backend', 'compile_mode', 'median_ms',
                 'p99_ms', 'fps', 'agreement', 'speedup', 'flops', 'params', 'host_peak_mb',
                 'kind'}


@pytest.mark.parametrize('name', list(registry()))
def test_onnx_export_matches_pytorch(name: str, weights_dir: Path,
                                     street_bgr: np.ndarray) -> None:
    spec, network = get_spec(name), load(name, weights_dir)
    engine = SegmentationEngine(spec, network, EngineConfig(input_size=SIZE, backend='torch'))
    street = engine.preprocess([street_bgr], 'bgr')
    # Batch 2 checks that the batch axis is dynamic (the export traced batch 1).
    batch = torch.cat([street, torch.randn_like(street)])
    session = onnx_session(export_onnx(network, SIZE))
    got = torch.from_numpy(session.run(None, {'image': batch.numpy()})[0])
    with torch.inference_mode():
        expected = network(batch)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() <= 1e-4 * max(1.0, float(expected.abs().max()))
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.999


def test_export_command_writes_a_file_onnxruntime_loads(tmp_path: Path, weights_dir: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'model.onnx'
    args = ['export', '--model', 'espnet_c_p2q3_cityscapes', '--size', '256x128',
            '--out', str(out), '--check', '--weights-dir', str(weights_dir)]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert 'trtexec --onnx=' in printed and 'ok' in printed
    session = onnxruntime.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    image, = session.get_inputs()
    assert image.name == 'image' and image.shape[1:] == [3, 128, 256]
    assert not isinstance(image.shape[0], int)  # dynamic batch
    logits = session.run(None, {'image': np.zeros((3, 3, 128, 256), np.float32)})[0]
    assert logits.shape == (3, 20, 16, 32)


def test_export_refuses_an_impossible_size(tmp_path: Path, weights_dir: Path,
                                           capsys: pytest.CaptureFixture) -> None:
    args = ['export', '--model', 'espnetv2_s0.5_pascal_256x256', '--size', '200x100',
            '--out', str(tmp_path / 'x.onnx'), '--weights-dir', str(weights_dir)]
    assert cli_main(args) == 2
    assert 'multiples of 32' in capsys.readouterr().err
    assert not (tmp_path / 'x.onnx').exists()


def test_bench_command_writes_rows_with_speedup_and_agreement(
        tmp_path: Path, weights_dir: Path, cityscapes_image: Path,
        capsys: pytest.CaptureFixture) -> None:
    out, png = tmp_path / 'bench.json', tmp_path / 'bench.png'
    args = ['bench', '--model', 'espnet_p2q3_cityscapes', '--size', '256x128', '--device',
            'cpu', '--repeats', '3', '--warmup', '1', '--weights-dir', str(weights_dir),
            '--json', str(out), '--plot', str(png), '--markdown', '--camera', '512x256',
            '--images', str(cityscapes_image)]
    assert cli_main(args) == 0
    rows = json.loads(out.read_text())
    variants = {row['variant'] for row in rows}
    assert len(rows) == 2 * len(variants) >= 4
    for row in rows:
        assert REQUIRED_KEYS <= row.keys()
        assert (row['model'], row['size'], row['device']) == ('espnet_p2q3_cityscapes',
                                                              '256x128', 'cpu')
        assert 0.0 <= row['agreement'] <= 1.0
        assert row['median_ms'] > 0 and row['p99_ms'] >= row['median_ms'] * 0.999
        assert row['fps'] == pytest.approx(1000 / row['median_ms'])
        assert row['kind'] in ('network', 'frame') and row['repeats'] == 3
        assert row['camera'] == '512x256' and row['agreement_pixels'] == 256 * 128
        assert row['flops'] > 1e8 and row['params'] > 1e5
    baseline = [row for row in rows if row['variant'] == 'eager fp32 (baseline)']
    assert {row['kind'] for row in baseline} == {'network', 'frame'}
    assert all(row['speedup'] == 1.0 and row['agreement'] == 1.0 for row in baseline)
    # The anchors: the authors' network flushed (the baseline) and as loaded, each in a
    # process of its own with glibc's malloc defaults and the CPU's floating-point modes.
    anchors = ['eager fp32 (baseline)', 'eager fp32, subnormal weights as loaded']
    assert [row['variant'] for row in rows if not row['retain_host_memory']] == [
        name for name in anchors for _ in range(2)]
    assert [row['subnormal_weights'] for row in rows] == [
        'as loaded' if row['variant'] == anchors[1] else 'flushed' for row in rows]
    assert all(row['denormals_flushed'] == (row['variant'] not in anchors) for row in rows)
    # Flushing changes the outputs below float rounding: labels identical.
    assert all(row['agreement'] == 1.0 for row in rows if row['variant'] == anchors[1])
    cpu = procfs.cpu_model()
    assert all((row['cpu'], row['cpu_isa']) == (cpu['name'], cpu['isa']) for row in rows)
    # Folding and channels-last change float rounding only: labels stay the same.
    fp32 = [row for row in rows if row['precision'] == 'fp32']
    assert all(row['agreement'] > 0.999 for row in fp32)
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    printed = capsys.readouterr().out
    assert '| cpu | espnet_p2q3_cityscapes | 256x128 | fp32 | eager fp32 (baseline) |' in printed
    assert printed.count(f'CPU: {procfs.describe_cpu(cpu)}') == 2  # the table and markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-CUDA path')
def test_bench_skips_cuda_with_the_reason(tmp_path: Path, weights_dir: Path,
                                          capsys: pytest.CaptureFixture) -> None:
    args = ['bench', '--model', 'espnet_c_p2q3_cityscapes', '--size', '64x32', '--device',
            'cuda', '--repeats', '1', '--weights-dir', str(weights_dir)]
    assert cli_main(args) == 1
    printed = capsys.readouterr().out
    assert 'skipped eager fp32 (baseline) on cuda: CUDA is not available' in printed
    assert 'nothing measured' in printed


def test_round_robin_rotates_the_order() -> None:
    calls: list[str] = []

    def timer(name: str):
        return lambda kind: calls.append(name + kind[0]) or 1.0
    prepared = [variants.Prepared(variants.baseline('cpu'), timer(name), list, None, None,
                                  {kind: [] for kind in variants.KINDS})
                for name in 'abc']
    benchmark.time_round_robin(prepared, 3)
    assert calls == 'an af bn bf cn cf bn bf cn cf an af cn cf an af bn bf'.split()
    assert all(item.times_ms == {'network': [1.0] * 3, 'frame': [1.0] * 3}
               for item in prepared)


def test_agreement_is_the_fraction_of_equal_pixels() -> None:
    reference = [np.zeros((2, 5), np.uint8), np.ones((3, 2), np.uint8)]
    labels = [np.zeros((2, 5), np.uint8), np.array([[1, 1], [0, 1], [1, 2]], np.uint8)]
    assert benchmark.agreement(labels, reference) == pytest.approx(14 / 16)


def test_variants_baseline_and_availability() -> None:
    cpu = variants.default_variants('cpu', compile_network=True)
    assert [variant.is_baseline for variant in cpu].count(True) == 1
    assert cpu[0].is_baseline and not cpu[0].fold and not cpu[0].channels_last
    assert not cpu[0].retain_host_memory
    assert {'mixed', 'bf16'} <= {variant.precision for variant in cpu}
    assert {'onnxruntime', 'torch', 'auto', 'onednn'} <= {variant.backend for variant in cpu}
    # One way to compile, named by compile_mode: jit in the process, background from the cache.
    assert {'jit', 'background'} <= {variant.compile_mode for variant in cpu}
    assert variants.unavailable(cpu[0]) is None
    cuda = variants.default_variants('cuda')
    assert any(variant.cuda_graph for variant in cuda)
    assert any(variant.host_preprocess for variant in cuda)
    if not torch.cuda.is_available():
        assert variants.unavailable(cuda[0]) == 'CUDA is not available'


def test_backend_torch_compile_picks_the_rows_compiled_in_the_process() -> None:
    """--backend torch-compile, the older spelling, picks the compile_mode jit rows."""
    args = argparse.Namespace(backend=['torch-compile'], precision=None, compile=False)
    picked = [variant for variant in bench.select_variants('cpu', args)
              if not variant.is_anchor]
    assert picked and {variant.compile_mode for variant in picked} == {'jit'}
    assert {variant.backend for variant in picked} == {'torch'}


def test_cpu_model_names_the_processor_and_the_isa_that_matters(tmp_path: Path) -> None:
    x86 = tmp_path / 'x86'
    x86.write_text('processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\n'
                   'flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile amx_bf16 avx512bw\n\n'
                   'processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu\n')
    assert procfs.cpu_model(x86) == {'name': 'Intel(R) Xeon(R) Processor',
                                     'isa': ['avx2', 'avx512f', 'avx512_bf16', 'amx_tile',
                                             'amx_bf16']}
    arm = tmp_path / 'arm'
    arm.write_text('processor\t: 0\nFeatures\t: fp asimd sve bf16\nHardware\t: Orin\n')
    assert procfs.cpu_model(arm) == {'name': 'Orin', 'isa': ['asimd', 'sve', 'bf16']}
    assert procfs.cpu_model(tmp_path / 'missing')['isa'] == []
    assert procfs.describe_cpu({'name': 'x', 'isa': []}) == 'x (no listed ISA extensions)'
