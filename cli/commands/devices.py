"""List sound devices for capturing calls, and show which ones the config selects.

  callshield devices [--json]

Columns: PortAudio index, input and output channels, default rate (Hz), host
API and name; ``>`` marks the default input device. Select devices in the
config file's ``[devices]`` section by index or by (part of) the name::

    [devices]
    stereo = "USB Audio"          # one stereo line-in: customer left, partner right
    # customer = 3                # or one device per speaker
    # partner = 4
    sample_rate = 16000
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from kernel.config import load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per device on stdout")


def run(args: argparse.Namespace) -> int:
    # imported here, not at the top: every command module loads for `callshield --help`; audio.device (sounddevice, numpy) about 220 ms (python -X importtime)
    from audio.device import DeviceConfig, list_devices

    config = DeviceConfig.from_section(load_config(args.config).section("devices"))
    devices = list_devices()
    if args.json:
        for device in devices:
            print(json.dumps(dataclasses.asdict(device), ensure_ascii=False))
        return 0
    if not devices:
        print("no sound devices found (is a sound server such as PulseAudio running?)")
    else:
        print(f"{'':1} {'#':>3}  {'in':>3} {'out':>3}  {'rate':>6}  {'api':<8} name")
        for d in devices:
            mark = ">" if d.default_input else " "
            print(f"{mark} {d.index:>3}  {d.max_input_channels:>3} {d.max_output_channels:>3}  {d.default_samplerate:>6.0f}  {d.hostapi:<8} {d.name}")
    print()
    print(f"capturing calls with: {_describe(config)} at {config.sample_rate} Hz")
    return 0


def _describe(config) -> str:
    if config.customer is not None:
        text = f"customer on device {config.customer!r}"
        return text + (f", partner on device {config.partner!r}" if config.partner is not None else " (no partner device)")
    device = "the default input device" if config.stereo is None else f"device {config.stereo!r}"
    return f"{device} as a stereo line-in (customer channel {config.customer_channel}, partner channel {config.partner_channel})"
