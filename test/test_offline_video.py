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


"""``espnet-ros video``: an mp4 made here from CamVid frames, segmented, read back with OpenCV."""

from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np

from espnet_ros.cli import main as cli_main
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Backend, DEFAULT_PRECISION

MODEL = 'espnet_p2q3_cityscapes'
SIZE = (128, 64)
ENGINE_ARGS = ['--model', MODEL, '--size', 'x'.join(map(str, SIZE)), '--device', 'cpu']
FRAMES = 5
FPS = 7.0
FRAME_SIZE = (240, 180)  # width, height: CamVid halved, to keep the test light


def write_video(path: Path, camvid_dir: Path) -> Path:
    """Write the first CamVid val frames, halved, as an mp4 at FPS."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), FPS, FRAME_SIZE)
    for frame in sorted((camvid_dir / 'val').iterdir())[:FRAMES]:
        writer.write(cv2.resize(cv2.imread(str(frame)), FRAME_SIZE, interpolation=cv2.INTER_AREA))
    writer.release()
    return path


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    """Return every frame of a video and its frame rate, as OpenCV reads them."""
    capture = cv2.VideoCapture(str(path))
    rate, frames = capture.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames, rate


def test_overlay_video_keeps_frame_count_and_rate(tmp_path: Path, camvid_dir: Path) -> None:
    source = write_video(tmp_path / 'in.mp4', camvid_dir)
    out, labels_dir = tmp_path / 'overlay.mp4', tmp_path / 'labels'
    result = subprocess.run(
        [sys.executable, '-m', 'espnet_ros.cli', 'video', str(source), '--out', str(out),
         '--labels-dir', str(labels_dir), '--batch', '2', *ENGINE_ARGS],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f'{FRAMES} frames read, {FRAMES} segmented, 0 malformed' in result.stdout
    inputs, _ = read_video(source)
    frames, rate = read_video(out)
    assert len(frames) == FRAMES and rate == FPS
    assert frames[0].shape[1::-1] == FRAME_SIZE
    engine = SegmentationEngine.from_pretrained(MODEL, input_size=SIZE, device='cpu',
                                                precision=DEFAULT_PRECISION,
                                                backend=Backend.AUTO)
    written = sorted(labels_dir.iterdir())
    assert [p.name for p in written] == [f'frame_{i:06d}.png' for i in range(FRAMES)]
    for frame, path in zip(inputs, written):
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        expected = engine.segment_batch([frame], order='bgr')[0].labels
        # Batches of two may round differently from one frame alone; nearly every pixel agrees.
        assert np.mean(labels == expected) > 0.99
    # The overlay is the frame blended with the class colours, not the frame itself.
    assert np.abs(frames[0].astype(int) - inputs[0].astype(int)).mean() > 5


def test_bad_videos_give_one_clear_line(tmp_path: Path, camvid_dir: Path, capsys) -> None:
    not_video = tmp_path / 'notes.mp4'
    not_video.write_text('not a video')
    source = write_video(tmp_path / 'in.mp4', camvid_dir)
    taken = tmp_path / 'taken.mp4'
    taken.write_bytes(b'')
    cases = [(not_video, tmp_path / 'a.mp4', 'cannot be opened as a video'),
             (tmp_path / 'missing.mp4', tmp_path / 'b.mp4', 'does not exist'),
             (source, tmp_path / 'c.gif', 'the output must end in one of'),
             (source, taken, 'exists; pass --force')]
    for video, out, expected in cases:
        assert cli_main(['video', str(video), '--out', str(out), *ENGINE_ARGS]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
