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

"""
The key of a compiled graph: everything a package is valid for, and the entry name it gives.

A graph compiled ahead of time (see :mod:`espnet_ros.runtime.graph_builder`) is valid only
for one network's weights, input size, batch, precision, thread count, CPU and PyTorch; a
:class:`GraphKey` holds them all and its digest names the entry in the cache
(:mod:`espnet_ros.runtime.graph_store`). The file name is built from checked parts only: the
model name is reduced to a safe slug, and the digest of the whole key makes it unique.
"""

from dataclasses import asdict, dataclass
import hashlib
import json
from pathlib import Path
import platform
import re
from typing import Any, Mapping

import torch
from torch import nn

# Bumped whenever what a package computes, or how it is built, changes.
# 2: built from weights with subnormals flushed; 3: a labels graph beside labels+confidence;
# 4: ESPNet's concatenations normalised part by part, its last layer in the head
# (phase planes); 5: both graphs' heads are the fused operators of runtime/phase_labels.py
FORMAT_VERSION = 5
# Characters a model name keeps in an entry's file name; anything else becomes '_'.
_UNSAFE_IN_NAME = re.compile(r'[^A-Za-z0-9_-]')
MAX_NAME_IN_STEM = 64
DIGEST_IN_STEM = 16


class GraphKeyError(ValueError):
    """A graph that cannot have a key (not a CPU graph), with the reason."""


def weights_sha256(network: nn.Module) -> str:
    """Return the sha256 of the network's parameters and buffers (names, shapes, values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f'{name}:{value.dtype}:{tuple(value.shape)};'.encode())
        if value.numel():  # as bytes: numpy has no bf16, and a 0-d tensor has no byte view
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cpu_features() -> str:
    """Return what the generated kernels depend on: the vector ISA and the CPU model."""
    capability = torch.backends.cpu.get_cpu_capability()
    flags, model = '', platform.processor()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            key, _, value = line.partition(':')
            if key.strip() == 'flags' and not flags:
                flags = hashlib.sha256(' '.join(sorted(value.split())).encode()).hexdigest()[:16]
            elif key.strip() == 'model name' and value.strip():
                model = value.strip()
    except OSError:
        pass  # not Linux: the ISA and the processor name are what is known
    return f'{platform.machine()} {capability} {model} flags:{flags}'


def name_slug(model: str) -> str:
    """Return ``model`` as it may appear in a file name: letters, digits, '_' and '-' only."""
    return _UNSAFE_IN_NAME.sub('_', model)[:MAX_NAME_IN_STEM] or 'model'


@dataclass(frozen=True)
class GraphKey:
    """Everything a compiled graph is valid for; any change makes another entry."""

    model: str
    weights_sha256: str
    input_size: tuple[int, int]  # (width, height)
    batch: int
    precision: str
    threads: int  # the kernels' OpenMP teams are sized when they are generated
    device: str
    cpu: str
    torch_version: str
    format_version: int = FORMAT_VERSION

    def digest(self) -> str:
        """Return the sha256 of the key's fields."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()

    def stem(self) -> str:
        """
        Return the entry's file name without suffix: readable, and unique by the digest.

        Every part is checked or derived: the model name as a slug (no separator, no dot,
        so never a path), numbers, a precision and the digest of the whole key.
        """
        width, height = self.input_size
        return (f'{name_slug(self.model)}-{int(width)}x{int(height)}-b{int(self.batch)}-'
                f'{name_slug(self.precision)}-t{int(self.threads)}-'
                f'{self.digest()[:DIGEST_IN_STEM]}')

    def to_json(self) -> dict[str, Any]:
        """Return the key as JSON values."""
        values = asdict(self)
        values['input_size'] = list(self.input_size)
        return values

    @classmethod
    def from_json(cls, values: Mapping[str, Any]) -> 'GraphKey':
        """Return the key written by :meth:`to_json`."""
        fields = dict(values)
        fields['input_size'] = tuple(fields['input_size'])
        return cls(**fields)


def graph_key(model: str, network: nn.Module, *, input_size: tuple[int, int], precision: str,
              threads: int, device: torch.device, batch: int = 1) -> GraphKey:
    """Return the key of ``network`` compiled for this input, precision, threads and device."""
    if device.type != 'cpu':
        raise GraphKeyError(f'compiled graphs are cached for the CPU only, not {device}')
    return GraphKey(model=model, weights_sha256=weights_sha256(network),
                    input_size=tuple(input_size), batch=batch, precision=str(precision),
                    threads=threads, device=device.type, cpu=cpu_features(),
                    torch_version=str(torch.__version__))
