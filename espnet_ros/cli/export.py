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


"""``espnet-ros export``: ONNX files for ONNX Runtime and TensorRT, checked against PyTorch."""

import argparse
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from espnet_ros.cli.bench import agreement_images
from espnet_ros.cli.commands import help_of
from espnet_ros.cli.common import OUTPUT_DIR, parse_size, SIZE_HELP
from espnet_ros.compat import SubParsers
from espnet_ros.runtime.engine import check_input_size, EngineConfig, SegmentationEngine
from espnet_ros.runtime.runners import export_onnx, ONNX_OPSET, onnx_session
from espnet_ros.zoo.registry import DEFAULT_MODEL
from espnet_ros.zoo.registry import get_spec, load, ModelSpec, registry

# A check passes when ONNX Runtime's labels match PyTorch's on nearly every pixel; logits
# differ by float rounding only (reassociated sums, folded batch norms).
MIN_AGREEMENT = 0.999
MAX_LOGIT_DIFF = 1e-2

EPILOG = f"""\
The file takes N x 3 x H x W float input named 'image' (normalised as the model's registry
entry says, N dynamic, H and W fixed) and gives 'logits' N x C x H x W (ESPNet-C: H/8 x W/8);
opset {ONNX_OPSET}, batch norms folded into the convolutions.

TensorRT on a Jetson (JetPack's trtexec), fp16 engine for batch 1:
  /usr/src/tensorrt/bin/trtexec --onnx=MODEL.onnx --fp16 --shapes=image:1x3xHxW \\
      --saveEngine=MODEL.plan
"""


def register(subparsers: SubParsers) -> None:
    """Add the ``export`` subcommand."""
    parser = subparsers.add_parser(
        'export', help=help_of('export'),
        description='Export a registry model to ONNX, optionally checked in ONNX Runtime '
                    'against PyTorch.', epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument('--model', help=f'registry name (default {DEFAULT_MODEL})')
    chosen.add_argument('--all', action='store_true', help='every registry model')
    parser.add_argument('--size', type=parse_size,
                        help=SIZE_HELP)
    parser.add_argument('--out', type=Path, help='output file (default MODEL_WxH.onnx)')
    parser.add_argument('--out-dir', type=Path, default=OUTPUT_DIR,
                        help=f'folder for default-named files (default {OUTPUT_DIR})')
    parser.add_argument('--check', action='store_true',
                        help='run the file in ONNX Runtime and compare with PyTorch')
    parser.add_argument('--weights-dir', type=Path, help='folder of the official checkpoints')
    parser.set_defaults(run=run)


def trtexec_command(path: Path, size: tuple[int, int]) -> str:
    """Return the trtexec line that builds a Jetson fp16 engine from ``path``."""
    width, height = size
    return (f'trtexec --onnx={path} --fp16 --shapes=image:1x3x{height}x{width} '
            f'--saveEngine={path.with_suffix(".plan")}')


def compare(spec: ModelSpec, network: nn.Module, model: Path, size: tuple[int, int],
            images: list[np.ndarray]) -> tuple[float, float]:
    """Return (max abs logit difference, label agreement) of ONNX Runtime vs eager PyTorch."""
    engine = SegmentationEngine(spec, network, EngineConfig(input_size=size, backend='torch'))
    batch = torch.cat([engine.preprocess([image], 'bgr') for image in images])
    with torch.inference_mode():
        expected = network.eval()(batch)
    got = torch.from_numpy(onnx_session(str(model)).run(None, {'image': batch.numpy()})[0])
    difference = float((got - expected).abs().max())
    return difference, float((got.argmax(1) == expected.argmax(1)).float().mean())


def export_one(name: str, size: Optional[tuple[int, int]], out: Path,
               weights_dir: Optional[Path], images: Optional[list[np.ndarray]]) -> bool:
    """Export one model, print what was done; return False if its check failed."""
    spec = get_spec(name)
    size = check_input_size(spec, size or spec.input_size)
    network = load(name, weights_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(export_onnx(network, size))
    print(f'{name}: wrote {out} ({out.stat().st_size / 1e6:.1f} MB, input 1x3x{size[1]}x'
          f'{size[0]}); TensorRT: {trtexec_command(out, size)}')
    if images is None:
        return True
    difference, agreement = compare(spec, network, out, size, images)
    passed = agreement >= MIN_AGREEMENT and difference <= MAX_LOGIT_DIFF
    print(f'{name}: ONNX Runtime vs PyTorch: max |logit diff| {difference:.2e}, labels agree '
          f'on {100 * agreement:.3f}% of pixels: {"ok" if passed else "MISMATCH"}')
    return passed


def default_file_name(spec: ModelSpec, size: Optional[tuple[int, int]]) -> str:
    """Return MODEL_WxH.onnx, without repeating a size the model's name already ends with."""
    width, height = check_input_size(spec, size)
    suffix = f'_{width}x{height}'
    return f'{spec.name if spec.name.endswith(suffix) else spec.name + suffix}.onnx'


def run(args: argparse.Namespace) -> int:
    """Export the chosen models; exit 1 if a check failed."""
    names = list(registry()) if args.all else [args.model or DEFAULT_MODEL]
    if args.out is not None and len(names) > 1:
        raise ValueError('--out names one file; with --all use --out-dir')
    images = None
    if args.check:
        try:
            images = agreement_images(None)
        except FileNotFoundError:  # an installed package without the shared data
            images = [np.random.default_rng(0).integers(0, 256, (512, 1024, 3), np.uint8)]
    failed = []
    for name in names:
        out = args.out or args.out_dir / default_file_name(get_spec(name), args.size)
        if not export_one(name, args.size, out, args.weights_dir, images):
            failed.append(name)
    if failed:
        print(f'check failed for: {", ".join(failed)}')
    return 1 if failed else 0
