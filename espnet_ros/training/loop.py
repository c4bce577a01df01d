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
The fine-tuning loop: from an official checkpoint and labelled folders to a model folder.

One epoch is one augmented pass over the training frames, then a validation pass scored
with :mod:`espnet_ros.imaging.metrics` through the same engine the node runs. After every
epoch the resume state is saved (``--resume`` continues from the last finished epoch after
Ctrl-C), the loss and mIoU history is written as JSON and PNG, and a better validation
mIoU replaces the model folder's checkpoint and manifest entry. Random draws come from
generators seeded per epoch from ``seed``, so a run, and a resumed run, repeat exactly on
the same machine.
"""

from dataclasses import dataclass, field, replace
from pathlib import Path
import time
from typing import Any, Callable, Optional

import cv2
import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from tqdm import tqdm

from espnet_ros.imaging.files import read_bgr
from espnet_ros.imaging.metrics import ConfusionMatrix, mean_iou
from espnet_ros.runtime.engine import (check_input_size, EngineConfig, resolve_device,
                                       SegmentationEngine)
from espnet_ros.runtime.postprocess import upsample_logits
from espnet_ros.training.classes import ClassTable
from espnet_ros.training.data import (IGNORE_INDEX, LabelledFolder, normalise, scan_folder,
                                      TrainingFrames)
from espnet_ros.training.model_folder import (atomic_path, checkpoint_name, register_model,
                                              save_state, write_json)
from espnet_ros.training.recipe import AUTHORS_RECIPE, Recipe
from espnet_ros.zoo import checkpoints
from espnet_ros.zoo.registry import (Dataset, get_spec, load, MAX_MODEL_NAME, MODEL_NAME,
                                     ModelSpec, official)

STATE_FILE = 'state.pt'
HISTORY_FILE = 'history.json'
PLOT_FILE = 'curve.png'
EPOCH_SEED_STRIDE = 1_000_003  # a prime: per-epoch seeds of different runs do not collide
PROTOCOL = 'ignore-void'


class TrainingError(RuntimeError):
    """A fine-tune that cannot start or go on; the message says what and which file."""


@dataclass(frozen=True)
class TrainingRun:
    """What one ``espnet-ros train`` asks for."""

    base: str
    name: str
    out: Path
    table: ClassTable
    train_images: Path
    train_labels: Path
    val_images: Optional[Path] = None
    val_labels: Optional[Path] = None
    epochs: Optional[int] = None
    time_budget_s: Optional[float] = None
    input_size: Optional[tuple[int, int]] = None
    batch: Optional[int] = None
    device: str = 'cpu'
    resume: bool = False
    seed: int = 0
    weights_dir: Optional[Path] = None
    recipe: Recipe = AUTHORS_RECIPE
    show_progress: bool = True

    @property
    def work_dir(self) -> Path:
        """Return the folder of the resume state, history and plot."""
        return self.out / f'{self.name}.training'


@dataclass
class Outcome:
    """What a finished (or budget-stopped) run reached."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best_miou: float = float('nan')
    best_epoch: int = 0
    checkpoint: Optional[Path] = None
    sha256: str = ''


def class_dependent_modules(base: ModelSpec, num_classes: int) -> set[str]:
    """Return the modules whose parameters do not fit the base's for ``num_classes``."""
    ours = base.network.for_classes(num_classes)
    with torch.device('meta'):
        official = base.build().state_dict()
        built = ours.build().state_dict()
        more = replace(ours, num_classes=num_classes + 1).build().state_dict()
    return {key.rpartition('.')[0] for key in built
            if built[key].shape != more[key].shape or built[key].shape != official[key].shape}


def initial_network(run: TrainingRun, base: ModelSpec) -> tuple[nn.Module, set[str]]:
    """Return the network started from the base checkpoint, and its fresh parameter names."""
    official = load(base.name, run.weights_dir).state_dict()
    fresh_modules = (set() if run.table.same_as(base.dataset)
                     else class_dependent_modules(base, run.table.num_classes))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        network = base.network.for_classes(run.table.num_classes).build()
    kept = {key: value for key, value in official.items()
            if key.rpartition('.')[0] not in fresh_modules}
    network.load_state_dict(kept, strict=False)
    fresh = {key for key, _ in network.named_parameters()
             if key.rpartition('.')[0] in fresh_modules}
    return network, fresh


def trained_spec(run: TrainingRun, base: ModelSpec, input_size: tuple[int, int]) -> ModelSpec:
    """Return the registry entry of the model being trained (before it has a checkpoint)."""
    table = run.table
    network = base.network.for_classes(table.num_classes)
    return ModelSpec(name=run.name, family=network.family, architecture=network.architecture,
                     checkpoint=checkpoint_name(run.name), sha256='', url='',
                     dataset=Dataset(run.name, table.classes, table.palette, table.void),
                     normalization=base.normalization, input_size=input_size, base=base.name)


def validate(spec: ModelSpec, network: nn.Module, folder: LabelledFolder, table: ClassTable,
             device: str, show_progress: bool) -> float:
    """Return the mean IoU (void ignored) of ``network`` on ``folder`` through the engine."""
    engine = SegmentationEngine(spec, network, EngineConfig(device=device, backend='torch'))
    matrix = ConfusionMatrix(table.num_classes)
    for image_path, label_path in tqdm(folder.pairs, desc='  validation', unit='img',
                                       leave=False, disable=not show_progress):
        truth = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        prediction = engine.segment(read_bgr(image_path), order='bgr').labels
        matrix.update(prediction, truth, ignore=table.void)
    return mean_iou(matrix, table.void)


def identity(run: TrainingRun, input_size: tuple[int, int]) -> dict[str, Any]:
    """Return what a resume state must match: the same model trained the same way."""
    return {'name': run.name, 'base': run.base, 'classes': list(run.table.classes),
            'void': run.table.void, 'input_size': list(input_size)}


def read_resume_state(path: Path, expected: dict[str, Any]) -> dict[str, Any]:
    """Return the resume state at ``path`` if it belongs to this run, else raise naming it."""
    if not path.is_file():
        raise TrainingError(f'{path}: nothing to resume (no training state of this model in '
                            'the --out folder)')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: B902 - torch raises many types for a bad file
        raise TrainingError(f'{path}: cannot be read as a training state: {error}') from None
    found = state.get('identity') if isinstance(state, dict) else None
    if found != expected:
        differences = ', '.join(
            f'{key} {found.get(key)!r} here, {value!r} asked' for key, value in expected.items()
            if found.get(key) != value) if isinstance(found, dict) else 'no identity'
        raise TrainingError(f'{path}: the training state is of another model ({differences})')
    return state


def plot_history(history: list[dict[str, Any]], target: Path, title: str) -> None:
    """Write the loss and validation mIoU per epoch as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [record['epoch'] for record in history]
    figure, loss_axes = plt.subplots(figsize=(7, 4))
    loss_axes.plot(epochs, [record['loss'] for record in history], 'o-', color='tab:red')
    loss_axes.set_xlabel('epoch')
    loss_axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    loss_axes.set_ylabel('training loss', color='tab:red')
    miou_axes = loss_axes.twinx()
    miou_axes.plot(epochs, [100 * record['val_miou'] for record in history], 's-',
                   color='tab:blue')
    miou_axes.set_ylabel('validation mIoU (%)', color='tab:blue')
    loss_axes.set_title(title)
    figure.tight_layout()
    with atomic_path(target) as partial:
        figure.savefig(partial, format='png', dpi=100)
    plt.close(figure)


class Trainer:
    """One fine-tune: checks everything up front, then runs epochs until done or out of time."""

    def __init__(self, run: TrainingRun, *, log: Callable[[str], None] = print) -> None:
        """Check the base, the classes and every frame; build the network and optimiser."""
        self.run = run
        self.log = log
        self.base = get_spec(run.base)
        if not MODEL_NAME.fullmatch(run.name):
            raise TrainingError(f'--name {run.name!r}: use letters, digits, _ . and - only, at '
                                f'most {MAX_MODEL_NAME} (it names the checkpoint file)')
        if run.name in official():
            raise TrainingError(f'--name {run.name!r} is an official model; choose another')
        if run.epochs is None and run.time_budget_s is None:
            raise TrainingError('give --epochs or --time-budget')
        if run.epochs is not None and run.epochs < 1:
            raise TrainingError(f'--epochs must be at least 1, got {run.epochs}')
        self.device = resolve_device(run.device)
        self.train = scan_folder(run.train_images, run.train_labels, run.table)
        self.val = (scan_folder(run.val_images, run.val_labels, run.table)
                    if run.val_images is not None else self.train)
        self.val_split = (f'{run.val_images} ({len(self.val.pairs)} frames)'
                          if run.val_images is not None else
                          f'the training frames {run.train_images} (no validation folder)')
        multiple = self.base.size_multiple
        self.input_size = run.input_size or tuple(side // multiple * multiple
                                                  for side in self.train.size)
        try:
            check_input_size(self.base, self.input_size)
        except ValueError as error:
            raise TrainingError(str(error)) from None
        self.spec = trained_spec(run, self.base, self.input_size)
        self.network, self.fresh = initial_network(run, self.base)
        self.network.to(self.device).train()
        recipe = run.recipe
        groups = [
            {'params': [p for n, p in self.network.named_parameters() if n not in self.fresh],
             'initial_lr': recipe.learning_rate},
            {'params': [p for n, p in self.network.named_parameters() if n in self.fresh],
             'initial_lr': recipe.learning_rate * recipe.new_layer_lr_factor}]
        self.optimizer = torch.optim.Adam([g for g in groups if g['params']],
                                          lr=recipe.learning_rate, betas=recipe.betas,
                                          eps=recipe.eps, weight_decay=recipe.weight_decay)
        self.weights = torch.from_numpy(recipe.class_weights(self.train.histogram)).to(
            self.device)
        self.frames = TrainingFrames(self.train, run.table, self.base.normalization,
                                     self.input_size, recipe.augmentation)
        self.batch = run.batch or recipe.batch
        self.identity = identity(run, self.input_size)
        self.outcome = Outcome()
        self.start_epoch = 1
        self.elapsed_s = 0.0
        state_path = run.work_dir / STATE_FILE
        if run.resume:
            self._restore(read_resume_state(state_path, self.identity))
        elif state_path.is_file():
            raise TrainingError(f'{state_path}: {run.out} already holds a training run of '
                                f'{run.name}; continue it with --resume, or choose another '
                                '--out or --name')

    def _restore(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state['model'])
        self.optimizer.load_state_dict(state['optimizer'])
        self.outcome.history = list(state['history'])
        self.outcome.best_miou = state['best_miou']
        self.outcome.best_epoch = state['best_epoch']
        self.elapsed_s = state['elapsed_s']
        self.start_epoch = state['epoch'] + 1
        self.log(f'resuming {self.run.name} after epoch {state["epoch"]} '
                 f'(best val mIoU {100 * self.outcome.best_miou:.2f} at epoch '
                 f'{self.outcome.best_epoch})')

    def progress(self, epoch: int) -> float:
        """Return how far through the run epoch ``epoch`` starts (0..1), for the schedule."""
        if self.run.epochs is not None:
            return (epoch - 1) / self.run.epochs
        return self.elapsed_s / self.run.time_budget_s

    def remaining_s(self, epoch: int, last_epoch_s: float) -> float:
        """Return the expected seconds left after epoch ``epoch``, at the last epoch's pace."""
        if self.run.epochs is not None:
            return max(0, self.run.epochs - epoch) * last_epoch_s
        return max(0.0, self.run.time_budget_s - self.elapsed_s)

    def _more_epochs(self, epoch: int, last_epoch_s: float) -> bool:
        if self.run.epochs is not None and epoch > self.run.epochs:
            return False
        if self.run.time_budget_s is not None:
            return self.elapsed_s + last_epoch_s <= self.run.time_budget_s
        return True

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """Run one augmented pass; return the mean loss and images per second."""
        factor = self.run.recipe.lr_factor(self.progress(epoch))
        for group in self.optimizer.param_groups:
            group['lr'] = group['initial_lr'] * factor
        seed = self.run.seed * EPOCH_SEED_STRIDE + epoch
        self.frames.reseed(seed)
        loader = torch.utils.data.DataLoader(self.frames, batch_size=self.batch, shuffle=True,
                                             generator=torch.Generator().manual_seed(seed))
        total = self.run.epochs
        bar = tqdm(loader, desc=f'epoch {epoch}' + (f'/{total}' if total else ''),
                   unit='batch', disable=not self.run.show_progress)
        losses, images, started = [], 0, time.perf_counter()
        for frames, targets in bar:
            targets = targets.to(self.device)
            if not (targets != IGNORE_INDEX).any():
                continue  # nothing labelled in these crops: no loss to learn from
            inputs = normalise(frames, self.base.normalization, self.device)
            logits = upsample_logits(self.network(inputs), targets.shape[-2:])
            loss = F.cross_entropy(logits, targets, weight=self.weights,
                                   ignore_index=IGNORE_INDEX)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(loss.item())
            images += len(frames)
            rate = images / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(loss=f'{losses[-1]:.3f}', img_s=f'{rate:.1f}')
        bar.close()
        if not losses:
            raise TrainingError(f'{self.run.train_labels}: no labelled pixel in any crop of '
                                f'epoch {epoch}: every label is void')
        return float(np.mean(losses)), images / max(time.perf_counter() - started, 1e-9)

    def _save_best(self, epoch: int, miou: float) -> None:
        run = self.run
        self.outcome.checkpoint = run.out / checkpoint_name(run.name)
        state = {key: value.detach().cpu().clone() for key, value in
                 self.network.state_dict().items()}
        save_state(self.outcome.checkpoint, state)
        self.outcome.sha256 = register_model(
            run.out, spec=self.spec, base=self.base, table=run.table,
            val_miou={'miou': round(100 * miou, 2), 'protocol': PROTOCOL, 'epoch': epoch,
                      'split': self.val_split})

    def _save_state(self, epoch: int) -> None:
        run = self.run
        save_state(run.work_dir / STATE_FILE, {
            'identity': self.identity, 'epoch': epoch, 'model': self.network.state_dict(),
            'optimizer': self.optimizer.state_dict(), 'history': self.outcome.history,
            'best_miou': self.outcome.best_miou, 'best_epoch': self.outcome.best_epoch,
            'elapsed_s': self.elapsed_s})
        write_json(run.work_dir / HISTORY_FILE, {'identity': self.identity,
                                                 'history': self.outcome.history})
        plot_history(self.outcome.history, run.work_dir / PLOT_FILE,
                     f'{run.name} from {run.base}')

    def fit(self) -> Outcome:
        """Run epochs until ``epochs`` or the time budget is reached; return the outcome."""
        epoch, last_epoch_s = self.start_epoch, 0.0
        while self._more_epochs(epoch, last_epoch_s):
            started = time.perf_counter()
            try:
                loss, rate = self.train_epoch(epoch)
                miou = validate(self.spec, self.network, self.val, self.run.table,
                                str(self.device), self.run.show_progress)
            except (torch.OutOfMemoryError, MemoryError) as error:
                raise TrainingError(
                    f'out of memory training {self.run.name} at batch {self.batch}, input '
                    '{}x{} on {}: lower --batch or --input-size ({})'.format(
                        *self.input_size, self.device, str(error).splitlines()[0])) from None
            last_epoch_s = time.perf_counter() - started
            self.elapsed_s += last_epoch_s
            lr = self.optimizer.param_groups[0]['lr']
            self.outcome.history.append({'epoch': epoch, 'loss': loss, 'val_miou': miou,
                                         'lr': lr, 'seconds': last_epoch_s,
                                         'images_per_s': rate})
            better = not self.outcome.best_miou >= miou  # NaN best: the first epoch wins
            if better:
                self.outcome.best_miou, self.outcome.best_epoch = miou, epoch
                self._save_best(epoch, miou)
            self._save_state(epoch)
            self.log(f'epoch {epoch}: loss {loss:.4f}, val mIoU {100 * miou:.2f}'
                     f'{" (best, saved)" if better else ""}, lr {lr:.2e}, '
                     f'{last_epoch_s:.0f} s, {rate:.1f} img/s, about '
                     f'{self.remaining_s(epoch, last_epoch_s) / 60:.0f} min left')
            epoch += 1
        if self.outcome.checkpoint is None and self.outcome.best_epoch:
            self.outcome.checkpoint = self.run.out / checkpoint_name(self.run.name)
            self.outcome.sha256 = checkpoints.sha256_of(self.outcome.checkpoint)
        return self.outcome
