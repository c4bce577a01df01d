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

"""reliability: auto picks the camera subscription's reliability from the publishers' offers."""

import pytest
from rclpy.qos import (DurabilityPolicy, qos_check_compatible, qos_profile_sensor_data,
                       QoSCompatibility, QoSProfile, ReliabilityPolicy)

from espnet_ros.ros.parameter_table import Reliability
from espnet_ros.ros.qos import (camera_subscription_qos, changed_reliability,
                                matching_reliability, resolve_reliability)

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
RELIABLE_LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
BEST_EFFORT = qos_profile_sensor_data
OFFERS = {'none': [], 'reliable': [RELIABLE], 'reliable latched': [RELIABLE_LATCHED],
          'best effort': [BEST_EFFORT], 'mixed': [RELIABLE, BEST_EFFORT]}


@pytest.mark.parametrize('offers, expected', [
    ('none', Reliability.BEST_EFFORT), ('reliable', Reliability.RELIABLE),
    ('reliable latched', Reliability.RELIABLE), ('best effort', Reliability.BEST_EFFORT),
    ('mixed', Reliability.BEST_EFFORT)])
def test_auto_matches_the_offers(offers: str, expected: Reliability) -> None:
    """Reliable only where every publisher is; best effort otherwise."""
    assert matching_reliability(OFFERS[offers]) == expected


@pytest.mark.parametrize('offers', sorted(OFFERS))
def test_auto_subscription_is_compatible_with_every_publisher(offers: str) -> None:
    """
    What auto subscribes with matches each publisher seen, by rmw's own check.

    System-default policies give a warning; only an error means no match.
    """
    requested = camera_subscription_qos(Reliability.AUTO, OFFERS[offers])
    for offered in OFFERS[offers]:
        compatibility, reason = qos_check_compatible(offered, requested)
        assert compatibility != QoSCompatibility.ERROR, reason


@pytest.mark.parametrize('setting', [Reliability.BEST_EFFORT, Reliability.RELIABLE])
def test_explicit_settings_are_kept(setting: Reliability) -> None:
    """An explicit reliability is used whatever the camera offers, and never re-decided."""
    for offers in OFFERS.values():
        assert resolve_reliability(setting.value, offers) == setting
        assert changed_reliability(setting.value, setting.value, offers) is None


def test_recheck_reports_only_changes() -> None:
    """A new publisher changes auto's choice only when the match changes."""
    current = matching_reliability([])
    assert changed_reliability(Reliability.AUTO, current, []) is None
    assert changed_reliability(Reliability.AUTO, current, [RELIABLE]) == Reliability.RELIABLE
    assert changed_reliability(Reliability.AUTO, Reliability.RELIABLE,
                               [RELIABLE, BEST_EFFORT]) == Reliability.BEST_EFFORT
