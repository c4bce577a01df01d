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

"""Intrinsics of the labels: a point projects to the same place in the labels as in the image."""

import numpy as np
import pytest

from espnet_ros.imaging.camera_model import image_intrinsics, SensorView

SENSOR = (2048, 1024)
K = [1000.0, 0.0, 1030.0, 0.0, 990.0, 500.0, 0.0, 0.0, 1.0]
P = [1000.0, 0.0, 1030.0, -60.0, 0.0, 990.0, 500.0, 0.0, 0.0, 0.0, 1.0, 0.0]
POINTS = np.array([[0.3, -0.2, 4.0], [-1.0, 0.5, 9.0], [0.0, 0.0, 2.0]])


def project(k: list[float], points: np.ndarray) -> np.ndarray:
    """Return the pixel coordinates of camera-frame points under K."""
    homogeneous = points @ np.asarray(k).reshape(3, 3).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


@pytest.mark.parametrize('offset,roi,binning', [((0, 0), (0, 0), (1, 1)),
                                                ((512, 256), (1024, 512), (1, 1)),
                                                ((512, 256), (1024, 512), (2, 2)),
                                                ((0, 0), (0, 0), (2, 4))])
def test_labels_of_a_roi_see_points_where_the_image_does(offset: tuple, roi: tuple,
                                                         binning: tuple) -> None:
    view = SensorView(SENSOR, offset, roi, binning)
    region = roi if all(roi) else SENSOR
    image_size = (region[0] // binning[0], region[1] // binning[1])
    label_size = (256, 128)
    k, p = image_intrinsics(K, P, view, image_size=image_size, to_size=label_size)
    on_sensor = project(K, POINTS)
    scale = np.array(label_size) / np.array(region)
    assert np.allclose(project(k, POINTS), (on_sensor - offset) * scale)
    # P moves and scales like K (its fourth column, the stereo baseline term, scales too).
    assert np.allclose(np.asarray(p).reshape(3, 4)[:, :3].reshape(-1), k)
    assert np.isclose(p[3], P[3] * scale[0])


def test_an_image_the_camera_info_does_not_describe_is_refused() -> None:
    view = SensorView(SENSOR, (512, 256), (1024, 512))
    with pytest.raises(ValueError, match='1024x512 image'):
        image_intrinsics(K, P, view, image_size=(640, 480), to_size=(256, 128))


def test_an_uncalibrated_size_takes_the_image_as_the_sensor() -> None:
    k, _ = image_intrinsics(K, P, SensorView((0, 0)), image_size=(1024, 512),
                            to_size=(512, 256))
    assert np.allclose(k, np.asarray(K) * np.repeat([0.5, 0.5, 1.0], 3))
