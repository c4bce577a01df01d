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
sha256, and, once loaded, its labels and confidence agree with the eager network's on a
probe frame; anything else is removed and rebuilt, never trusted. A graph that loads but
disagrees is remembered (:func:`remember_rejection`), so that the next start does not build
the same graph again.
"""

import json
import os
from typing import Optional

import torch
from torch import nn

from espnet_ros.compat import aoti_load_package
from espnet_ros.runtime.graph_key import GraphKey
from espnet_ros.runtime.graph_store import Entry, GraphCacheError, MAX_SIDECAR_BYTES, Store
from espnet_ros.runtime.head import CONFIDENCE_GRAPH, LABELS_GRAPH, LabelsAndConfidence
from espnet_ros.runtime.options import Precision

# How closely a loaded graph's labels must agree with the eager network's in the graph's own
# precision on the probe frame: the path it replaces, computing the same function. An fp32
# graph is the same arithmetic in other kernels: labels may differ only at near-ties. A mixed
# graph rounds to bf16 (8 significant bits) at other points than eager mixed precision does,
# and the probe's smooth colour waves are full of near-ties: 99.56% to 99.89% of it agreed in
# builds at 512x256 here (eager mixed against fp32: 99.25% of the probe, 99.95% of a real
# street frame). So mixed is allowed 1%, margin over what correct graphs do; a broken graph
# (say a wrongly folded batch norm: 24% of labels off) still fails. Agreement with fp32 on
# real frames, the quality that matters, is the benchmark's and test_graph_cache's to show
# (99.5%, the rule of every fast path).
MIN_PROBE_AGREEMENT = {Precision.FP32: 0.999, Precision.MIXED: 0.99}
# ... and a pixel's confidence (a probability) by float and bf16 rounding only.
MAX_PROBE_CONFIDENCE_DIFFERENCE = 0.05
# Beside an entry: the record that its graph was built and disagreed, so that the next start
# serves eager at once instead of compiling the same graph again (it would disagree again:
# the key holds everything the build depends on). Deleting it asks for another build.
REJECTED_SUFFIX = '.rejected.json'


class PackagedGraph:
    """
    A loaded package: N x 3 x H x W float CPU batch -> uint8 labels (and float32 confidence).

    Its two graphs (:data:`~espnet_ros.runtime.head.GRAPH_HEADS`) share nothing at
    run time; a frame that needs no confidence runs the labels graph, which skips the softmax.
    """

    def __init__(self, entry: Entry, path: str) -> None:
        """Load ``entry``'s package from ``path`` (as :meth:`Entry.checked` yields it)."""
        try:
            self._labels = aoti_load_package(path, LABELS_GRAPH)
            self._with_confidence = aoti_load_package(path, CONFIDENCE_GRAPH)
        except Exception as error:  # noqa: B902 - a bad package fails in many ways
            raise GraphCacheError(f'{entry.package}: cannot be loaded ({error})') from None
        self.key = entry.key
        width, height = entry.key.input_size
        self.shape = (entry.key.batch, 3, height, width)

    def fits(self, batch: torch.Tensor) -> bool:
        """Return True if ``batch`` has the shape and device the graph was compiled for."""
        return tuple(batch.shape) == self.shape and batch.device.type == 'cpu'

    def __call__(self, batch: torch.Tensor, *, with_confidence: bool = True
                 ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Return the labels of ``batch`` and, ``with_confidence``, their confidence."""
        with torch.inference_mode():
            batch = batch.float().contiguous()
            if with_confidence:
                labels, confidence = self._with_confidence(batch)
                return labels, confidence
            return self._labels(batch), None


def probe_agreement(graph: PackagedGraph, reference: nn.Module, probe: torch.Tensor
                    ) -> tuple[float, float]:
    """
    Compare both of ``graph``'s graphs with the eager ``reference`` on ``probe``.

    Return the smaller share of pixels whose labels agree, and the largest absolute
    difference of a pixel's confidence.
    """
    with torch.inference_mode():
        expected, expected_confidence = LabelsAndConfidence(reference)(probe.contiguous(
            memory_format=torch.channels_last))
        labels, confidence = graph(probe)
        labels_alone, _ = graph(probe, with_confidence=False)
    difference = (confidence.float() - expected_confidence.float()).abs().max()
    agreement = min(float((found == expected).float().mean())
                    for found in (labels, labels_alone))
    return agreement, float(difference)


class ProbeDisagreement(GraphCacheError):
    """A graph that loads but labels the probe frame too differently from the eager network."""

    def __init__(self, message: str, agreement: float) -> None:
        """Keep the measured agreement for the rejection record."""
        super().__init__(message)
        self.agreement = agreement


def load_verified(entry: Entry, reference: nn.Module, probe: torch.Tensor,
                  store: Store) -> PackagedGraph:
    """
    Return the entry's graph if it checks out and agrees on the probe; else raise why.

    ``reference``: the eager network prepared in the entry's precision
    (:func:`~espnet_ros.runtime.graph_builder.prepare_network`); :data:`MIN_PROBE_AGREEMENT`
    says how closely, per precision. ``store`` is the entry's folder, opened and checked
    (:func:`graph_store.open_store`): the package is loaded only from a private folder, and
    only the file whose sha256 was checked.
    """
    with entry.checked(store) as path:
        graph = PackagedGraph(entry, path)
    agreement, difference = probe_agreement(graph, reference, probe)
    required = MIN_PROBE_AGREEMENT[Precision(entry.key.precision)]
    if agreement < required:
        raise ProbeDisagreement(f'{entry.package}: its labels agree with the eager network on '
                                f'{100 * agreement:.2f}% of a probe frame, under '
                                f'{100 * required:.1f}%', agreement)
    # NaN (a graph that computes garbage) fails this comparison too.
    if not difference <= MAX_PROBE_CONFIDENCE_DIFFERENCE:
        raise GraphCacheError(f'{entry.package}: its confidence differs from the eager '
                              f"network's by up to {difference:.3f} on a probe frame, over "
                              f'{MAX_PROBE_CONFIDENCE_DIFFERENCE}')
    return graph


def rejection_name(entry: Entry) -> str:
    """Return the file name, in the entry's folder, of the record of its rejected graph."""
    return entry.key.stem() + REJECTED_SUFFIX


def remember_rejection(entry: Entry, error: ProbeDisagreement, store: Store) -> None:
    """Record that ``entry``'s graph disagreed (best effort: a failed write only costs time)."""
    record = json.dumps({'key': entry.key.to_json(), 'agreement': error.agreement,
                         'reason': str(error)}, indent=1).encode()
    try:
        # Through the store: private, created fresh, never through a planted link.
        descriptor = store.open_file(rejection_name(entry),
                                     os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(descriptor, 'wb') as stream:
            stream.write(record)
    except (OSError, GraphCacheError):
        pass


def rejected_before(entry: Entry, store: Store) -> Optional[str]:
    """
    Return why ``entry``'s graph was rejected before, or None if it was not (or may pass now).

    A record counts only for the same key and while its agreement is still under the rule
    (a later, looser rule builds again); anything unreadable counts as no record.
    """
    name = rejection_name(entry)
    try:
        with os.fdopen(store.open_file(name), 'rb') as stream:
            record = json.loads(stream.read(MAX_SIDECAR_BYTES))
        same = GraphKey.from_json(record['key']) == entry.key
        agreement = float(record['agreement'])
    except (OSError, GraphCacheError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not same or agreement >= MIN_PROBE_AGREEMENT[Precision(entry.key.precision)]:
        return None
    return (f'{record.get("reason", "it disagreed")} (recorded in {store.folder / name}; '
            'delete it to build again)')
