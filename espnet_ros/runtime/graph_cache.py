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
Compiled graphs kept on disk, loaded and checked: AOTInductor packages run in place of eager.

``torch.compile`` with frozen weights is the fastest CPU path, but it compiles for minutes at
every start: frozen graphs miss inductor's own cache. The same graph is therefore compiled
ahead of time into a ``.pt2`` package, once per key, and loaded in seconds afterwards. The
work is split by job:

- :mod:`espnet_ros.runtime.graph_key`: what a package is valid for, and its entry's name;
- :mod:`espnet_ros.runtime.graph_store`: the private cache folder, its entries, locks and
  what it trusts (read it before pointing the cache at a shared folder);
- :mod:`espnet_ros.runtime.graph_builder`: compiling, in a child process;
- here: loading an entry and checking it against the eager network.

An entry is used only when its folder and files are private to this user (the package is a
shared library loaded into the process), its sidecar names the same key and the package's
sha256, and, once loaded, its labels agree with the eager network's on a probe frame;
anything else is removed and rebuilt, never trusted.
"""

import torch
from torch import nn

from espnet_ros.runtime.graph_builder import LabelsAndConfidence
from espnet_ros.runtime.graph_store import Entry, GraphCacheError, Store

# Same arithmetic, other kernels: labels may differ only at near-ties.
MIN_PROBE_AGREEMENT = 0.999


class PackagedGraph:
    """A loaded package: N x 3 x H x W float CPU batch -> (uint8 labels, float32 confidence)."""

    def __init__(self, entry: Entry, path: str) -> None:
        """Load ``entry``'s package from ``path`` (as :meth:`Entry.checked` yields it)."""
        try:
            self._model = torch._inductor.aoti_load_package(path)
        except Exception as error:  # noqa: B902 - a bad package fails in many ways
            raise GraphCacheError(f'{entry.package}: cannot be loaded ({error})') from None
        self.key = entry.key
        width, height = entry.key.input_size
        self.shape = (entry.key.batch, 3, height, width)

    def fits(self, batch: torch.Tensor) -> bool:
        """Return True if ``batch`` has the shape and device the graph was compiled for."""
        return tuple(batch.shape) == self.shape and batch.device.type == 'cpu'

    def __call__(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the labels and confidence of ``batch``."""
        with torch.inference_mode():
            labels, confidence = self._model(batch.float().contiguous())
        return labels, confidence


def probe_agreement(graph: PackagedGraph, reference: nn.Module, probe: torch.Tensor) -> float:
    """Return the share of probe pixels where ``graph`` and the eager ``reference`` agree."""
    with torch.inference_mode():
        expected, _ = LabelsAndConfidence(reference)(probe.contiguous(
            memory_format=torch.channels_last))
        labels, _ = graph(probe)
    return float((labels == expected).float().mean())


def load_verified(entry: Entry, reference: nn.Module, probe: torch.Tensor,
                  store: Store) -> PackagedGraph:
    """
    Return the entry's graph if it checks out and agrees on the probe; else raise why.

    ``store`` is the entry's folder, opened and checked (:func:`graph_store.open_store`): the
    package is loaded only from a private folder, and only the file whose sha256 was checked.
    """
    with entry.checked(store) as path:
        graph = PackagedGraph(entry, path)
    agreement = probe_agreement(graph, reference, probe)
    if agreement < MIN_PROBE_AGREEMENT:
        raise GraphCacheError(f'{entry.package}: its labels agree with the eager network on '
                              f'{100 * agreement:.2f}% of a probe frame, under '
                              f'{100 * MIN_PROBE_AGREEMENT:.1f}%')
    return graph
