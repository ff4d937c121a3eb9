"""Child process of test_agent.py's kill test: a real Agent installing images and queueing telemetry until killed.

Usage: python agent_kill_worker.py DEVICE_DIR IMAGES_DIR SEED. Prints, flushed, one line per durable step:
``booted``, ``queued SEQ``, ``acking SEQ`` / ``acked SEQ``, ``installing VERSION COUNTER``,
``installed VERSION COUNTER STATUS``. The images are signed MCUboot images named ``<counter>.img``.

PYTEST_DONT_REWRITE
"""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from trustroot.agent.core import Agent
from trustroot.agent.device import AgentDevice
from trustroot.agent.sim_behaviour import Behaviour
from trustroot.agent.slots import SlotImage
from trustroot.agent.timing import ScaledClock
from trustroot.image.verify import verify_image
from trustroot.provision.device_dir import device_secret_from_env


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def main(device_dir: Path, images: Path, seed: int) -> None:
    rng = random.Random(seed)
    clock = ScaledClock(scale=1)
    device = AgentDevice.load(device_dir, device_secret_from_env(), service_url="https://127.0.0.1:9")

    async def health(_image: SlotImage) -> bool:
        return rng.random() < 0.7

    agent = Agent(device, clock=clock, rng=rng, health_check=health, sampler=Behaviour(rng, clock.elapsed))
    agent.boot()
    say("booted")
    step = 0
    while True:
        step += 1
        seq = agent.sample()
        say(f"queued {seq}")
        if step % 4 == 0 and seq is not None and seq > 2:
            say(f"acking {seq - 2}")
            agent.queue.ack(seq - 2)
            say(f"acked {seq - 2}")
        if step % 3 == 0:
            counter = agent.slots.boot().counter_floor + 1
            path = images / f"{counter}.img"
            if path.exists():
                data = path.read_bytes()
                verified = verify_image(data, keys=device.image_keys, min_counter=counter)
                version = str(verified.version)
                say(f"installing {version} {counter}")
                status = await agent.install_verified(data, version, counter)
                say(f"installed {version} {counter} {status}")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
