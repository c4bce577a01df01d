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
The offline commands never destroy what they did not write, and end cleanly on signals.

``--force`` replaces only this tool's output, never the input (also through a link, or
when one holds the other) nor a folder holding anything else; SIGTERM and SIGHUP close the
bag as Ctrl-C does; a full disk gives one clear error and a valid or removed output; numbers
are range-checked; a run where no frame could be segmented fails.
"""

from pathlib import Path
import shutil
import signal
import subprocess

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from test_offline_bag import (camvid_frames, ENGINE_ARGS, interrupted_bag_run, raw_image,
                              read_bag, run_cli, STORE, TOPIC, write_bag)
from test_offline_video import write_video

from espnet_ros.offline.bag import BagJob, BagSegmentation
from espnet_ros.offline.stream import OfflineError
from espnet_ros.runtime.engine import SegmentationEngine
from espnet_ros.runtime.options import Backend, DEFAULT_PRECISION

MODEL = 'espnet_p2q3_cityscapes'
SIZE = (128, 64)


@pytest.fixture(scope='module')
def frames(camvid_dir: Path) -> list[np.ndarray]:
    """Return a few CamVid frames."""
    return camvid_frames(camvid_dir, 4)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """Return the one error line of a failed command (and check there is only one)."""
    lines = result.stderr.strip().splitlines()
    assert 'Traceback' not in result.stderr and len(lines) >= 1, result.stderr[-3000:]
    return lines[-1]


def test_force_never_replaces_the_folder_holding_the_input(tmp_path: Path,
                                                           frames: list) -> None:
    victim = write_bag(tmp_path / 'victim', [raw_image(i, f) for i, f in enumerate(frames)],
                       storage='mcap')
    mcap, = victim.glob('*.mcap')
    before = mcap.read_bytes()
    result = run_cli('bag', str(mcap), '--image-topic', TOPIC, '--out', str(victim), '--force',
                     '--only-outputs', *ENGINE_ARGS)
    assert result.returncode == 2 and 'is, holds or lies inside the input' in one_error_line(
        result)
    assert mcap.read_bytes() == before
    inside = victim / 'out'
    result = run_cli('bag', str(victim), '--image-topic', TOPIC, '--out', str(inside),
                     *ENGINE_ARGS)
    assert result.returncode == 2 and 'lies inside the input' in one_error_line(result)


def test_force_never_replaces_a_folder_holding_other_things(tmp_path: Path,
                                                            frames: list) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    project = tmp_path / 'project'
    (project / 'src').mkdir(parents=True)
    (project / 'metadata.yaml').write_text('notes: mine\n')
    (project / 'src' / 'thesis.tex').write_text('\\section{Keep me}')
    result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out', str(project),
                     '--force', *ENGINE_ARGS)
    assert result.returncode == 2 and 'not a bag this tool wrote' in one_error_line(result)
    assert (project / 'src' / 'thesis.tex').read_text() == '\\section{Keep me}'
    other = write_bag(tmp_path / 'other', [raw_image(0, frames[0])], topic='/other/image_raw')
    result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out', str(other),
                     '--force', *ENGINE_ARGS)
    assert result.returncode == 2 and '/other/image_raw' in one_error_line(result)
    assert '/other/image_raw' in read_bag(other), "someone else's recording is kept"


def test_force_replaces_this_tools_own_output(tmp_path: Path, frames: list) -> None:
    from espnet_ros.offline.output_paths import MARKER

    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    out = tmp_path / 'out'
    for _ in range(2):
        result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out', str(out),
                         '--force', '--only-outputs', *ENGINE_ARGS)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (out / MARKER).is_file()
    assert '/cam/segmentation/labels' in read_bag(out)


def test_video_force_never_replaces_the_input(tmp_path: Path, camvid_dir: Path) -> None:
    video = write_video(tmp_path / 'in.mp4', camvid_dir)
    before = video.read_bytes()
    link = tmp_path / 'link.mp4'
    link.symlink_to(video)
    for out in (video, link):
        result = run_cli('video', str(video), '--out', str(out), '--force', *ENGINE_ARGS)
        assert result.returncode == 2, result.stderr[-2000:]
        assert 'input' in one_error_line(result)
    assert video.read_bytes() == before
    folder = tmp_path / 'folder.mp4'
    folder.mkdir()
    result = run_cli('video', str(video), '--out', str(folder), '--force', *ENGINE_ARGS)
    assert result.returncode == 2 and 'not a video file' in one_error_line(result)
    labels = tmp_path / 'labels'
    labels.mkdir()
    (labels / 'notes.txt').write_text('keep')
    result = run_cli('video', str(video), '--out', str(tmp_path / 'o.mp4'), '--labels-dir',
                     str(labels), '--force', *ENGINE_ARGS)
    assert result.returncode == 2 and 'frame_NNNNNN.png' in one_error_line(result)
    assert (labels / 'notes.txt').exists()


@pytest.mark.parametrize('sent,status', [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_close_a_valid_bag(tmp_path: Path, camvid_dir: Path,
                                              sent: signal.Signals, status: int) -> None:
    run = interrupted_bag_run(tmp_path, camvid_frames(camvid_dir, 8), sent)
    assert run.status == status, run.stderr[-3000:]
    assert 'interrupted after' in run.stdout and 'Traceback' not in run.stderr
    assert (run.out / 'metadata.yaml').is_file()
    done = int(run.stdout.split('interrupted after ')[1].split()[0])
    assert len(read_bag(run.out)['/cam/segmentation/labels']) == done
    result = run_cli('bag', str(run.source), '--image-topic', TOPIC, '--out', str(run.out),
                     '--force', '--end', '0.5', *ENGINE_ARGS)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_full_disk_while_copying_gives_one_error(tmp_path: Path, frames: list,
                                                   small_disk, storage: str) -> None:
    """Another camera's frames come first: copying them must not fill the disk unchecked."""
    other = [raw_image(i, frames[i % len(frames)]) for i in range(8)]  # about 4 MB
    path = tmp_path / 'in'
    with Writer(path, version=8, storage_plugin=StoragePlugin[storage.upper()]) as writer:
        first = writer.add_connection('/other/image_raw', 'sensor_msgs/msg/Image',
                                      typestore=STORE)
        camera = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=STORE)
        for index, message in enumerate(other):
            writer.write(first, index + 1, STORE.serialize_cdr(message, 'sensor_msgs/msg/Image'))
        writer.write(camera, 100, STORE.serialize_cdr(raw_image(0, frames[0]),
                                                      'sensor_msgs/msg/Image'))
    disk = small_disk(tmp_path / 'disk', '1m')
    result = run_cli('bag', str(path), '--image-topic', TOPIC, '--out', str(disk / 'out'),
                     *ENGINE_ARGS)
    assert result.returncode == 2
    line = one_error_line(result)
    assert 'not enough disk space' in line and 'valid bag' in line, line
    assert (disk / 'out' / 'metadata.yaml').is_file()
    read_bag(disk / 'out')


@pytest.mark.parametrize('storage', ['sqlite3', 'mcap'])
def test_a_disk_that_fills_anyway_leaves_a_valid_or_no_bag(
        tmp_path: Path, frames: list, small_disk, storage: str) -> None:
    """Without the free-space guard, the disk really fills: a clear error, nothing unreadable."""
    source = write_bag(tmp_path / 'in', [raw_image(i, frames[i % len(frames)])
                                         for i in range(12)], storage=storage)
    out = small_disk(tmp_path / 'disk', '1m') / 'out'
    engine = SegmentationEngine.from_pretrained(MODEL, input_size=SIZE, device='cpu',
                                                precision=DEFAULT_PRECISION,
                                                backend=Backend.AUTO)
    segmentation = BagSegmentation(BagJob(source=source, image_topic=TOPIC, out=out,
                                          min_free_bytes=0))
    with pytest.raises(OfflineError) as error:
        segmentation.run(engine)
    text = str(error.value)
    assert 'valid bag' in text or 'removed' in text, text
    if out.exists():
        read_bag(out)  # what is left must be a readable bag


@pytest.mark.parametrize('arguments,expected', [
    (['--end', 'inf'], '--end'), (['--start', '1e300'], '--start'),
    (['--start', 'nan'], '--start'), (['--batch', '100000'], '--batch'),
])
def test_numbers_are_range_checked(tmp_path: Path, frames: list, arguments: list,
                                   expected: str) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(0, frames[0])])
    result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), *arguments, *ENGINE_ARGS)
    assert result.returncode == 2, result.stderr[-2000:]
    assert expected in one_error_line(result) and 'Traceback' not in result.stderr


def test_a_full_disk_removes_a_video_cut_short(tmp_path: Path, camvid_dir: Path,
                                               small_disk) -> None:
    video = write_video(tmp_path / 'in.mp4', camvid_dir)
    out = small_disk(tmp_path / 'disk', '1m') / 'out.mp4'
    result = run_cli('video', str(video), '--out', str(out), *ENGINE_ARGS)
    assert result.returncode == 2
    line = one_error_line(result)
    assert 'not enough disk space' in line and 'removed the partial video' in line, line
    assert not out.exists()


@pytest.mark.parametrize('small', ['labels', 'video'])
def test_a_full_disk_removes_the_label_files_too(tmp_path: Path, camvid_dir: Path,
                                                 small_disk, small: str) -> None:
    """The labels folder on its own small disk, or beside a video on one: both go."""
    video = write_video(tmp_path / 'in.mp4', camvid_dir)
    disk = small_disk(tmp_path / 'disk', '1m')
    out = (disk if small == 'video' else tmp_path) / 'out.mp4'
    labels = (disk if small == 'labels' else tmp_path) / 'labels'
    result = run_cli('video', str(video), '--out', str(out), '--labels-dir', str(labels),
                     *ENGINE_ARGS)
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_error_line(result)
    assert 'not enough disk space' in line and f'label files in {labels}' in line, line
    assert not out.exists() and not labels.exists()


def test_half_a_db3_is_refused_in_one_line(tmp_path: Path, frames: list) -> None:
    source = write_bag(tmp_path / 'in', [raw_image(i, f) for i, f in enumerate(frames)])
    db3, = source.glob('*.db3')
    db3.write_bytes(db3.read_bytes()[:db3.stat().st_size // 2])
    result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out', str(tmp_path / 'out'),
                     *ENGINE_ARGS)
    assert result.returncode == 2, result.stderr[-2000:]
    line = one_error_line(result)
    assert line.startswith('espnet-ros bag: error: ') and str(source) in line, line


def test_a_run_whose_frames_all_failed_exits_non_zero(tmp_path: Path, frames: list) -> None:
    bad = [raw_image(i, frames[0], encoding='nonsense') for i in range(3)]
    source = write_bag(tmp_path / 'in', bad)
    result = run_cli('bag', str(source), '--image-topic', TOPIC, '--out',
                     str(tmp_path / 'out'), *ENGINE_ARGS)
    assert result.returncode == 1, result.stdout + result.stderr[-2000:]
    assert 'none of the 3 frames could be segmented' in result.stderr
    assert 'wrote' not in result.stdout


def test_a_topic_with_two_types_is_named(tmp_path: Path, frames: list) -> None:
    path = tmp_path / 'mixed'
    with Writer(path, version=8, storage_plugin=StoragePlugin.SQLITE3) as writer:
        image = writer.add_connection(TOPIC, 'sensor_msgs/msg/Image', typestore=STORE)
        text = writer.add_connection(TOPIC, 'std_msgs/msg/String', typestore=STORE)
        writer.write(image, 1, STORE.serialize_cdr(raw_image(0, frames[0]),
                                                   'sensor_msgs/msg/Image'))
        writer.write(text, 2, STORE.serialize_cdr(STORE.types['std_msgs/msg/String'](data='x'),
                                                  'std_msgs/msg/String'))
    result = run_cli('bag', str(path), '--image-topic', TOPIC, '--out', str(tmp_path / 'out'),
                     *ENGINE_ARGS)
    assert result.returncode == 2
    assert 'several message types' in one_error_line(result)
    shutil.rmtree(path)
