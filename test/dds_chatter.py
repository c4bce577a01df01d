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
Talker and listener processes for test_dds_isolation.py.

``dds_chatter.py talk`` publishes std_msgs/String until interrupted; ``dds_chatter.py listen N``
prints 'received N' once N messages arrived, then holds its sockets open until stdin closes.
"""

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from std_msgs.msg import String

TOPIC = '/espnet_ros_test/chatter'


def talk() -> None:
    """Publish a counter at 20 Hz until SIGINT."""
    node = rclpy.create_node('isolation_talker')
    publisher = node.create_publisher(String, TOPIC, 10)
    count = 0

    def publish() -> None:
        nonlocal count
        publisher.publish(String(data=f'hello {count}'))
        count += 1

    node.create_timer(0.05, publish)
    rclpy.spin(node)


def listen(wanted: int) -> None:
    """Report once `wanted` messages arrived, then hold the sockets open until stdin closes."""
    node = rclpy.create_node('isolation_listener')
    received = []
    node.create_subscription(String, TOPIC, lambda msg: received.append(msg.data), 10)
    while len(received) < wanted:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(f'received {len(received)}', flush=True)
    sys.stdin.read()


def main() -> None:
    """Run the role named on the command line."""
    rclpy.init()
    try:
        if sys.argv[1] == 'talk':
            talk()
        else:
            listen(int(sys.argv[2]))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()
