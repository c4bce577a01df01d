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
Compiled graphs kept on disk: AOTInductor packages, keyed by everything that makes one valid.

``torch.compile`` with frozen weights is the fastest CPU path, but it compiles for minutes at
every start: frozen graphs miss inductor's own cache. Here the same graph (folded batch
norms, weights frozen, arg-max and confidence fused into the last kernels) is compiled ahead
of time into a ``.pt2`` package with AOTInductor, once per :class:`GraphKey`, and loaded
(and checked) in seconds afterwards.

An entry is a package and a JSON sidecar holding its key and the package's sha256. An entry
is used only when its sidecar names the same key and the package has that sha256, and when,
once loaded, its labels agree with the eager network's on a probe frame; anything else (a
stale key, a truncated or corrupt file, a failed load or a disagreement) is deleted and
rebuilt, never trusted.

The cache folder is ``$ESPNET_ROS_CACHE`` if set, else ``$XDG_CACHE_HOME/espnet_ros`` (by
default ``~/.cache/espnet_ros``), plus ``graphs/``. Building runs in a child process
(``python -m espnet_ros.runtime.graph_cache JOB PARENT_PID``) at a lower priority: compiling takes
minutes of Python and C++ compiler time that must not stall the frames being served.
"""

from dataclasses import asdict, dataclass
import hashlib
import json
import os
from pathlib import Path
import platform
import sys
import tempfile
from typing import Any, Mapping, Optional

import torch
from torch import nn

from espnet_ros.runtime.folding import fold_batch_norms
from espnet_ros.runtime.mixed_precision import apply_mixed_precision
from espnet_ros.runtime.options import Precision
from espnet_ros.runtime.postprocess import class_labels, upsample_logits
from espnet_ros.zoo.checkpoints import sha256_of

CACHE_ENV = 'ESPNET_ROS_CACHE'
GRAPHS_FOLDER = 'graphs'
PACKAGE_SUFFIX = '.pt2'
SIDECAR_SUFFIX = '.json'
# Bumped whenever what a package computes, or how it is built, changes.
FORMAT_VERSION = 2  # 2: built from weights with subnormals flushed
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
# Beside an entry: the record that its graph was built and disagreed, so that the next start
# serves eager at once instead of compiling the same graph again (it would disagree again:
# the key holds everything the build depends on). Deleting it asks for another build.
REJECTED_SUFFIX = '.rejected.json'
# The child compiles at a lower priority than the frames being served.
BUILDER_NICENESS = 10


class GraphCacheError(RuntimeError):
    """A cache entry that cannot be used or built; the message names the file and why."""


def cache_folder(environ: Mapping[str, str] = os.environ) -> Path:
    """Return the folder of compiled graphs (see the module docstring for the order)."""
    root = environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser() / GRAPHS_FOLDER
    xdg = environ.get('XDG_CACHE_HOME') or str(Path('~/.cache').expanduser())
    return Path(xdg) / 'espnet_ros' / GRAPHS_FOLDER


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
        """Return the entry's file name without suffix: readable, and unique by the digest."""
        width, height = self.input_size
        return (f'{self.model}-{width}x{height}-b{self.batch}-{self.precision}-'
                f't{self.threads}-{self.digest()[:16]}')

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
        raise GraphCacheError(f'compiled graphs are cached for the CPU only, not {device}')
    return GraphKey(model=model, weights_sha256=weights_sha256(network),
                    input_size=tuple(input_size), batch=batch, precision=str(precision),
                    threads=threads, device=device.type, cpu=cpu_features(),
                    torch_version=str(torch.__version__))


class LabelsAndConfidence(nn.Module):
    """
    The graph that is compiled: network, upsampling, arg-max and winning-class probability.

    N x 3 x H x W float input -> (N x H x W uint8 labels, N x H x W float32 confidence), so
    the full-size logits are never written out.
    """

    def __init__(self, network: nn.Module) -> None:
        """Wrap a prepared (folded, cast) network."""
        super().__init__()
        self.network = network

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the labels and confidence of ``batch`` at its resolution."""
        logits = upsample_logits(self.network(batch), batch.shape[-2:])
        return class_labels(logits), logits.float().softmax(1).amax(1)


def prepare_network(network: nn.Module, precision: str) -> nn.Module:
    """Return a folded fp32 CPU copy of ``network``, bf16 where 'mixed' says, channels-last."""
    import copy

    prepared = fold_batch_norms(copy.deepcopy(network).eval().float().cpu())
    if precision == Precision.MIXED:
        apply_mixed_precision(prepared)
    elif precision != Precision.FP32:
        raise GraphCacheError(f'compiled graphs are built in fp32 or mixed, not {precision}')
    return prepared.to(memory_format=torch.channels_last)


class Entry:
    """The files of one cache entry: the package and its sidecar."""

    def __init__(self, folder: Path, key: GraphKey) -> None:
        """Name the entry of ``key`` in ``folder``."""
        self.key = key
        self.package = folder / f'{key.stem()}{PACKAGE_SUFFIX}'
        self.sidecar = folder / f'{key.stem()}{SIDECAR_SUFFIX}'

    def exists(self) -> bool:
        """Return True if either file is there."""
        return self.package.exists() or self.sidecar.exists()

    def check(self) -> None:
        """Raise :class:`GraphCacheError` unless the sidecar names this key and package sha256."""
        try:
            recorded = json.loads(self.sidecar.read_text())
            key = GraphKey.from_json(recorded['key'])
            sha256 = recorded['package_sha256']
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise GraphCacheError(
                f'{self.sidecar}: not a readable cache record ({error})') from None
        if key != self.key:
            raise GraphCacheError(f'{self.sidecar}: made for another model, size or machine')
        if not self.package.is_file():
            raise GraphCacheError(f'{self.package}: missing')
        found = sha256_of(self.package)
        if found != sha256:
            raise GraphCacheError(f'{self.package}: sha256 {found[:12]}... is not the '
                                  f'recorded {sha256[:12]}... (corrupt or changed)')

    def remove(self) -> None:
        """Delete both files (a bad entry is rebuilt, never trusted)."""
        for path in (self.package, self.sidecar):
            path.unlink(missing_ok=True)

    def write(self, package_bytes_from: Path, build_seconds: float) -> None:
        """Move a built package into place, then write its sidecar (each atomically)."""
        os.replace(package_bytes_from, self.package)
        record = {'key': self.key.to_json(), 'package_sha256': sha256_of(self.package),
                  'build_seconds': round(build_seconds, 1)}
        partial = self.sidecar.with_name(self.sidecar.name + '.partial')
        partial.write_text(json.dumps(record, indent=1))
        os.replace(partial, self.sidecar)


class PackagedGraph:
    """A loaded package: N x 3 x H x W float CPU batch -> (uint8 labels, float32 confidence)."""

    def __init__(self, entry: Entry) -> None:
        """Load ``entry``'s package (checked with :meth:`Entry.check` first)."""
        try:
            self._model = torch._inductor.aoti_load_package(str(entry.package))
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


class ProbeDisagreement(GraphCacheError):
    """A graph that loads but labels the probe frame too differently from the eager network."""

    def __init__(self, message: str, agreement: float) -> None:
        """Keep the measured agreement for the rejection record."""
        super().__init__(message)
        self.agreement = agreement


def load_verified(entry: Entry, reference: nn.Module, probe: torch.Tensor) -> PackagedGraph:
    """
    Return the entry's graph if it checks out and agrees on the probe; else raise why.

    ``reference``: the eager network prepared in the entry's precision
    (:func:`prepare_network`); :data:`MIN_PROBE_AGREEMENT` says how closely, per precision.
    """
    entry.check()
    graph = PackagedGraph(entry)
    agreement = probe_agreement(graph, reference, probe)
    required = MIN_PROBE_AGREEMENT[Precision(entry.key.precision)]
    if agreement < required:
        raise ProbeDisagreement(f'{entry.package}: its labels agree with the eager network on '
                                f'{100 * agreement:.2f}% of a probe frame, under '
                                f'{100 * required:.1f}%', agreement)
    return graph


def rejection_record(entry: Entry) -> Path:
    """Return where the record of ``entry``'s rejected graph is kept."""
    return entry.package.with_name(entry.key.stem() + REJECTED_SUFFIX)


def remember_rejection(entry: Entry, error: ProbeDisagreement) -> None:
    """Record that ``entry``'s graph disagreed (best effort: a failed write only costs time)."""
    record = {'key': entry.key.to_json(), 'agreement': error.agreement, 'reason': str(error)}
    try:
        rejection_record(entry).write_text(json.dumps(record, indent=1))
    except OSError:
        pass


def rejected_before(entry: Entry) -> Optional[str]:
    """
    Return why ``entry``'s graph was rejected before, or None if it was not (or may pass now).

    A record counts only for the same key and while its agreement is still under the rule
    (a later, looser rule builds again); anything unreadable counts as no record.
    """
    path = rejection_record(entry)
    try:
        record = json.loads(path.read_text())
        same = GraphKey.from_json(record['key']) == entry.key
        agreement = float(record['agreement'])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not same or agreement >= MIN_PROBE_AGREEMENT[Precision(entry.key.precision)]:
        return None
    return f'{record.get("reason", "it disagreed")} (recorded in {path}; delete it to build again)'


def build_package(network: nn.Module, key: GraphKey, target: Path, *,
                  autotune: bool = True) -> None:
    """
    Compile ``network`` (prepared, see :func:`prepare_network`) for ``key`` into ``target``.

    The weights are frozen into the graph, so oneDNN gets them packed once and inductor folds
    the constants; ``autotune`` also times inductor's own GEMM templates against oneDNN.
    """
    width, height = key.input_size
    example = torch.zeros(key.batch, 3, height, width)
    graph = LabelsAndConfidence(network).eval()
    options = {'freezing': True, 'max_autotune': autotune}
    with torch.no_grad():
        exported = torch.export.export(graph, (example,))
        torch._inductor.aoti_compile_and_package(exported, package_path=str(target),
                                                 inductor_configs=options)


def write_job(folder: Path, *, family: str, architecture: Mapping[str, Any], num_classes: int,
              network: nn.Module, key: GraphKey, autotune: bool) -> Path:
    """Write what the builder child needs (weights-only loadable) and return the file."""
    folder.mkdir(parents=True, exist_ok=True)
    descriptor, path = tempfile.mkstemp(prefix='job-', suffix='.pt', dir=folder)
    os.close(descriptor)
    torch.save({'family': family, 'architecture': dict(architecture),
                'num_classes': num_classes, 'autotune': autotune,
                'key': key.to_json(), 'folder': str(folder),
                'state_dict': {name: value.detach().cpu() for name, value in
                               network.state_dict().items()}}, path)
    return Path(path)


def builder_command(job: Path) -> list[str]:
    """Return the command that builds the entry a job file describes, for this process."""
    return [sys.executable, '-m', 'espnet_ros.runtime.graph_cache', str(job), str(os.getpid())]


def run_job(job: Path) -> Entry:
    """
    Build the entry a job file describes (in the child process); return it.

    A lock file keeps two builders (two nodes, or a reload) from compiling the same entry at
    once: the second waits, then finds the first one's entry and stops there.
    """
    import fcntl
    import time

    from torch._inductor import config as inductor_config

    from espnet_ros.zoo.registry import FAMILIES

    description = torch.load(job, map_location='cpu', weights_only=True)
    key = GraphKey.from_json(description['key'])
    torch.set_num_threads(key.threads)
    network = FAMILIES[description['family']].constructor(
        num_classes=description['num_classes'], **description['architecture'])
    network.load_state_dict(description['state_dict'])
    if weights_sha256(network) != key.weights_sha256:
        raise GraphCacheError(f'{job}: its weights are not the ones its key names')
    entry = Entry(Path(description['folder']), key)
    with open(entry.package.with_suffix('.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entry.check()
            return entry  # built by another process while this one waited
        except GraphCacheError:
            entry.remove()
        started = time.monotonic()
        # AOTInductor writes only to names ending in .pt2; this one is never looked up.
        partial = entry.package.with_name(f'{entry.package.stem}.partial{PACKAGE_SUFFIX}')
        try:
            # One compiler process: a robot's other programs keep the remaining cores.
            with inductor_config.patch(compile_threads=1):
                build_package(prepare_network(network, key.precision), key, partial,
                              autotune=description['autotune'])
            entry.write(partial, time.monotonic() - started)
        finally:
            partial.unlink(missing_ok=True)
    return entry


def exit_with_parent(job: Path, parent: int, poll_s: float = 1.0) -> None:
    """
    End this process group once process ``parent`` is no longer its parent.

    A node killed mid-build then leaves no compiler behind, even one killed while this
    process was still importing PyTorch. The builder leads its own process group (see
    graph_switch), so the C++ compilers inductor started end with it.
    """
    import signal
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        job.unlink(missing_ok=True)
        if os.getpgid(0) == os.getpid():  # leading a group of its own: take the compilers
            os.killpg(os.getpid(), signal.SIGKILL)
        os._exit(1)
    threading.Thread(target=watch, name='parent-watch', daemon=True).start()


def main(argv: Optional[list[str]] = None) -> int:
    """Build one entry in a child: ``python -m espnet_ros.runtime.graph_cache JOB PARENT``."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 2 or not arguments[1].isdigit():
        print('usage: python -m espnet_ros.runtime.graph_cache JOB PARENT_PID', file=sys.stderr)
        return 2
    job = Path(arguments[0])
    exit_with_parent(job, int(arguments[1]))
    try:
        os.nice(BUILDER_NICENESS)
        entry = run_job(job)
    except Exception as error:  # noqa: B902 - the parent reads the reason from stderr
        print(f'graph build failed: {type(error).__name__}: {error}', file=sys.stderr)
        return 1
    finally:
        job.unlink(missing_ok=True)
    print(entry.package)
    return 0


if __name__ == '__main__':
    sys.exit(main())
