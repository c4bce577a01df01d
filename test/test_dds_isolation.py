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
DDS isolation: with scripts/ros_env.sh in force, nodes talk over loopback and nothing else.

Two processes exchange std_msgs/String under the session's environment (see conftest.py);
while both run, every DDS port they listen on (the RTPS well-known ports of the domain) must
be bound to 127.0.0.0/8, and no DDS multicast group may be joined. Jazzy's rmw_fastrtps,
under ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST, also opens ephemeral send-only sockets on
every interface; those are outside the RTPS port range and only ever send to 127.0.0.1.
"""

import ipaddress
import os
from pathlib import Path
import select
import signal
import subprocess
import sys
import time
from typing import Iterator

import pytest

CHATTER = Path(__file__).resolve().parent / 'dds_chatter.py'
MESSAGES = 5
# RTPS well-known ports: 7400 + 250 * domain + offsets below 250 (DDSI-RTPS 9.6.1.1).
RTPS_PORT_BASE = 7400
RTPS_DOMAIN_GAIN = 250
# 239.255.0.1, the default DDS discovery group, as /proc/net/igmp prints it.
DDS_MULTICAST_GROUP_HEX = '0100FFEF'
TIMEOUT_S = 30.0


def socket_inodes(pid: int) -> set:
    """Return the inodes of the sockets process `pid` holds open."""
    inodes = set()
    for fd in Path(f'/proc/{pid}/fd').iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith('socket:['):
            inodes.add(int(target[8:-1]))
    return inodes


def udp_sockets(table: str) -> Iterator[tuple]:
    """Yield (local address, port, inode) for each socket of /proc/net/udp or udp6."""
    with open(f'/proc/net/{table}') as rows:
        next(rows)
        for row in rows:
            fields = row.split()
            address, port = fields[1].split(':')
            packed = bytes.fromhex(address)
            # The kernel prints each 32-bit word of the address in host (little-endian) order.
            packed = b''.join(packed[i:i + 4][::-1] for i in range(0, len(packed), 4))
            yield ipaddress.ip_address(packed), int(port, 16), int(fields[9])


def read_line(process: subprocess.Popen, deadline: float) -> str:
    """Read one line of the process's stdout, failing the test past the deadline."""
    remaining = deadline - time.monotonic()
    ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0.0))
    if not ready:
        pytest.fail(f'no message across DDS within {TIMEOUT_S:.0f} s')
    return process.stdout.readline().strip()


def stop(process: subprocess.Popen) -> None:
    """Interrupt the process so rclpy shuts down cleanly, killing it if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.mark.skipif(not Path('/proc/net/udp').exists(), reason='needs Linux /proc/net')
def test_nodes_talk_over_loopback_only() -> None:
    """A talker and a listener exchange messages using only loopback UDP sockets."""
    assert os.environ['FASTRTPS_DEFAULT_PROFILES_FILE'].endswith('fastdds_localhost.xml')
    talker = subprocess.Popen([sys.executable, str(CHATTER), 'talk'])
    listener = subprocess.Popen([sys.executable, str(CHATTER), 'listen', str(MESSAGES)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = read_line(listener, time.monotonic() + TIMEOUT_S)
        assert line == f'received {MESSAGES}'
        held = socket_inodes(talker.pid) | socket_inodes(listener.pid)
        bound = [(address, port) for table in ('udp', 'udp6')
                 for address, port, inode in udp_sockets(table) if inode in held]
    finally:
        listener.stdin.close()
        stop(listener)
        stop(talker)
    assert bound, 'the nodes hold no UDP socket: discovery did not use loopback UDP'
    domain_ports = range(RTPS_PORT_BASE + RTPS_DOMAIN_GAIN * int(os.environ['ROS_DOMAIN_ID']),
                         RTPS_PORT_BASE + RTPS_DOMAIN_GAIN * (int(os.environ['ROS_DOMAIN_ID'])
                                                              + 1))
    listening = [(address, port) for address, port in bound if port in domain_ports]
    assert listening, f'no socket on the RTPS ports of the domain: {bound}'
    outside = [f'{address}:{port}' for address, port in listening
               if address.version != 4 or not address.is_loopback]
    assert not outside, f'DDS ports listening outside 127.0.0.0/8: {outside}'
    with open('/proc/net/igmp') as groups:
        assert DDS_MULTICAST_GROUP_HEX not in groups.read(), 'a DDS multicast group was joined'
