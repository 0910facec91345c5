"""Which torch build the environment gets: CPU, or a CUDA build the NVIDIA driver can run.

One table maps the lowest driver of each CUDA toolkit (NVIDIA's release notes, Linux
and Windows differ slightly) to the wheel tag of PyTorch's index for the pinned torch.
Without ``nvidia-smi``, on macOS, with a driver older than every CUDA build, or when the
user forces it, the CPU build is chosen.
"""

from __future__ import annotations

import re
import subprocess  # nosec B404  # asks nvidia-smi for the driver version, no shell
from dataclasses import dataclass

TORCH_VERSION = "2.13.0"
NVIDIA_SMI_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class CudaBuild:
    tag: str  # the folder of PyTorch's wheel index, e.g. "cu128"
    linux_driver: tuple[int, ...]  # lowest driver that runs it
    windows_driver: tuple[int, ...]


# Newest first: the first build the driver runs is taken.
CUDA_BUILDS = (
    CudaBuild("cu130", (580, 65, 6), (580, 88)),
    CudaBuild("cu128", (570, 26), (570, 65)),
    CudaBuild("cu126", (560, 28, 3), (560, 76)),
)


@dataclass(frozen=True)
class TorchChoice:
    tag: str  # "cpu" or a CudaBuild tag
    reason: str  # one sentence for the log

    def pip_arguments(self, index_base: str | None) -> list[str]:
        """``pip install`` arguments for torch: the pin, and the build's index when one is configured."""
        arguments = [f"torch=={TORCH_VERSION}"]
        if index_base:
            arguments += ["--index-url", f"{index_base.rstrip('/')}/{self.tag}"]
        return arguments


def parse_driver_version(text: str) -> tuple[int, ...] | None:
    """The first line of ``nvidia-smi --query-gpu=driver_version --format=csv,noheader``."""
    match = re.match(r"\s*(\d+(?:\.\d+)*)", text or "")
    return tuple(int(p) for p in match.group(1).split(".")) if match else None


def choose_torch_build(system: str, driver: tuple[int, ...] | None, force_cpu: bool = False) -> TorchChoice:
    if force_cpu:
        return TorchChoice("cpu", "the CPU build, as the 'force CPU' setting asks")
    if system == "Darwin":
        return TorchChoice("cpu", "the standard build (macOS has no CUDA; it includes Apple's MPS)")
    if driver is None:
        return TorchChoice("cpu", "the CPU build (no NVIDIA GPU found: nvidia-smi is missing or reports none)")
    shown = ".".join(str(p) for p in driver)
    for build in CUDA_BUILDS:
        if driver >= (build.windows_driver if system == "Windows" else build.linux_driver):
            return TorchChoice(build.tag, f"the CUDA build {build.tag} (NVIDIA driver {shown})")
    oldest = CUDA_BUILDS[-1]
    need = ".".join(str(p) for p in (oldest.windows_driver if system == "Windows" else oldest.linux_driver))
    return TorchChoice(
        "cpu",
        f"the CPU build: NVIDIA driver {shown} is older than every CUDA build of torch "
        f"{TORCH_VERSION} needs (update it to {need} or newer to use the GPU)",
    )


def nvidia_driver_version() -> tuple[int, ...] | None:
    """The driver version nvidia-smi reports for the first GPU; None without one."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],  # nosec B603 B607  # the driver's tool, found on PATH as users install it
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_driver_version(done.stdout.splitlines()[0]) if done.returncode == 0 and done.stdout.strip() else None
