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
Where the offline commands may write, and what ``--force`` may replace.

``--force`` replaces only what this tool wrote: a bag folder holding its marker file
(:data:`MARKER`, left in every bag it writes), or a bag folder whose topics are all ours
plus those of the input (a copy of it, or an earlier run's output without the marker);
for ``video``, a file (never a folder) and a labels folder holding only ``frame_NNNNNN.png``.
Never the input: paths are compared after resolving links, and an output that holds the
input, or lies inside it, is refused as well. Never a folder that holds anything else.
"""

from pathlib import Path
import re
import shutil
from typing import Iterable, Optional

from espnet_ros.offline.stream import OfflineError
from espnet_ros.zoo.user_files import read_document, UserFileError

MARKER = '.espnet-ros-output'
MARKER_TEXT = 'written by espnet-ros; `--force` may replace this folder\n'
# What a rosbag2 folder holds: metadata, sqlite3 files and their journals, MCAP files.
BAG_FILE = re.compile(r'metadata\.yaml|.+\.db3(-journal|-wal|-shm)?|.+\.mcap(\.zstd)?'
                      + '|' + re.escape(MARKER))
LABEL_FILE = re.compile(r'frame_\d{6}\.png')


def overlaps(first: Path, second: Path) -> bool:
    """Return True if the paths are one, or one lies inside the other (links resolved)."""
    a, b = first.resolve(), second.resolve()
    return a == b or a in b.parents or b in a.parents


def check_not_input(out: Path, source: Path, what: str = 'output') -> None:
    """Raise if ``out`` is the input, holds it or lies inside it."""
    if overlaps(out, source):
        raise OfflineError(f'the {what} {out} is, holds or lies inside the input {source}; '
                           'choose another path')


def _bag_topics(folder: Path) -> set[str]:
    try:
        metadata = read_document(folder / 'metadata.yaml')
        info = metadata['rosbag2_bagfile_information']
        return {entry['topic_metadata']['name'] for entry in info['topics_with_message_count']}
    except (UserFileError, KeyError, TypeError) as error:
        raise OfflineError(f'{folder} has a metadata.yaml this tool cannot read ({error}); '
                           'not replacing it even with --force') from None


def clear_bag_output(out: Path, source: Path, *, force: bool, ours: Iterable[str],
                     input_topics: Iterable[str]) -> None:
    """Make way for the output bag ``out``, or raise saying what is in the way."""
    check_not_input(out, source)
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise OfflineError(f'{out} exists; pass --force to replace it')
    refusal = (f'{out} exists and is not a bag this tool wrote; not replacing it even with '
               '--force')
    if out.is_symlink() or not out.is_dir():
        raise OfflineError(refusal)
    entries = list(out.iterdir())
    if any(entry.is_dir() or not BAG_FILE.fullmatch(entry.name) for entry in entries):
        raise OfflineError(refusal + ' (it holds other files)')
    if entries and not (out / MARKER).is_file():
        if not (out / 'metadata.yaml').is_file():
            raise OfflineError(refusal)
        foreign = _bag_topics(out) - set(ours) - set(input_topics)
        if foreign:
            raise OfflineError(f'{refusal} (it records topics this run neither writes nor '
                               f"copies: {', '.join(sorted(foreign)[:5])})")
    shutil.rmtree(out)


def mark_bag(out: Path) -> None:
    """Leave the marker that lets ``--force`` replace this bag later."""
    (out / MARKER).write_text(MARKER_TEXT)


def clear_video_outputs(out: Path, labels_dir: Optional[Path], source: Path, *,
                        force: bool) -> None:
    """Check the video's output file and labels folder; raise if either is in the way."""
    check_not_input(out, source)
    if labels_dir is not None:
        check_not_input(labels_dir, source, 'labels folder')
        if overlaps(labels_dir, out):
            raise OfflineError(f'the labels folder {labels_dir} and the output {out} overlap')
    if out.exists() or out.is_symlink():
        if not force:
            raise OfflineError(f'{out} exists; pass --force to replace it')
        if out.is_symlink() or not out.is_file():
            raise OfflineError(f'{out} exists and is not a video file; not replacing it even '
                               'with --force')
    if labels_dir is not None and labels_dir.exists():
        if not force:
            raise OfflineError(f'{labels_dir} exists; pass --force to replace it')
        if labels_dir.is_symlink() or not labels_dir.is_dir() or any(
                not LABEL_FILE.fullmatch(entry.name) for entry in labels_dir.iterdir()):
            raise OfflineError(f'{labels_dir} holds files other than frame_NNNNNN.png; not '
                               'replacing it even with --force')
        shutil.rmtree(labels_dir)  # an earlier run's frames: a shorter video leaves none
