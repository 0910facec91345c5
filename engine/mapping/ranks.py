"""A mapping job over several processes: ``torchrun ... -m engine classify|embed JOB.json``, or the job's ``"ranks"``.

Under torchrun (WORLD_SIZE > 1) each process is a rank: it builds the same Plan, takes its
shard of the window grid (engine.mapping.shards), writes its parts (engine.mapping.parts)
unless a finished, verified part of an earlier run is there, and waits for the others;
rank 0 then assembles the outputs. The parts folder must be one all ranks see (a shared
file system when the ranks run on several machines); inputs can be read by every rank
from object storage through GDAL (``/vsicurl/``, ``/vsis3/``: README).

With ``"ranks": K`` and no torchrun, the engine starts the K ranks itself on this machine
(``python -m engine worker`` each, gloo on 127.0.0.1), forwards their progress and logs,
stops them all when one fails or the run is cancelled, and returns rank 0's result.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import socket
import subprocess  # nosec B404  # starts the engine's own rank workers, no shell
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rasterio.warp import transform_bounds

from engine.errors import Cancelled, EngineError
from engine.io.job import Job
from engine.io.raster import open_raster
from engine.mapping.coverage import Coverage
from engine.mapping.shards import data_weights, split_rows
from engine.runtime.progress import Reporter
from engine.runtime.threads import default_threads

# Ranks wait for the slowest shard at the end; torchrun (or the launcher here) stops them all
# as soon as one fails, so this only bounds a silent hang.
MAPPING_TIMEOUT = dt.timedelta(days=3)
STOP_SECONDS = 10.0  # a rank's grace between SIGTERM (its partial files removed) and SIGKILL

Loader = Callable[[], tuple[Any, Any, dict]]  # -> (model, head, metadata)


def map_job(operation: str, source: str | dict, job: Job, reporter: Reporter, load: Loader) -> dict[str, Any]:
    """Run a classify/embed job in this process, as one rank of torchrun's, or over ``job.ranks`` processes."""
    from engine.runtime.distributed import launched_by_torchrun  # lazy: keeps torch out of this module

    if launched_by_torchrun():
        return run_rank(job, reporter, load)
    if job.ranks > 1:
        return launch(operation, source, job, reporter)
    from engine.mapping.run import run_map  # lazy: keeps torch out of this module

    model, head, metadata = load()
    return run_map(job, reporter, model, head, metadata)


def _footprints(plan) -> list[tuple[float, float, float, float]]:
    crs, boxes = plan.geometry.patch_grid.crs, []
    for m in plan.modalities.values():
        for path in sorted({layer.path for layer in m.layers}):
            with open_raster(path, f"{m.name} input") as ds:
                boxes.append(ds.bounds if ds.crs == crs else transform_bounds(ds.crs, crs, *ds.bounds, densify_pts=21))
    return boxes


def plan_shards(plan, world: int):
    windows = plan.geometry.windows
    return split_rows(windows, data_weights(windows, plan.geometry.patch_grid, _footprints(plan)), world)


def run_shard(job: Job, plan, shard, model, head, reporter: Reporter) -> dict[str, Any]:
    """Write one shard's parts, or keep those a finished run left; its result and whether it was resumed."""
    from engine.mapping import parts  # lazy: keeps torch out of this module
    from engine.mapping.run import execute  # lazy: keeps torch out of this module

    stamp = parts.fingerprint(job, plan, shard)
    label = f"Shard {shard.index + 1} of {shard.count} (patch rows {shard.rows[0]}-{shard.rows[1]})"
    done = parts.finished(plan, shard, stamp)
    if done is not None:
        reporter.log(f"{label}: finished parts of an earlier run verified (size and SHA-256), kept.")
        return {**done, "resumed": True}
    for output in plan.outputs.files.values():
        parts.parts_folder(output).mkdir(exist_ok=True)
    mine = replace(
        plan,
        shard=shard,
        outputs=replace(plan.outputs, files={k: str(parts.part_path(v, shard)) for k, v in plan.outputs.files.items()}),
    )
    result = execute(mine, model, head, reporter)
    parts.write_manifest(plan, shard, stamp, result)
    reporter.log(f"{label}: written.")
    return {
        k: result[k] for k in ("coverage", "windows_computed", "windows_without_data", "model_seconds", "seconds")
    } | {"resumed": False}


def run_rank(job: Job, reporter: Reporter, load: Loader) -> dict[str, Any]:
    import torch.distributed as torch_dist  # lazy: keeps torch out of this module

    from engine.mapping.plan import build_plan  # lazy: keeps torch out of this module
    from engine.runtime import distributed  # lazy: keeps torch out of this module

    started = time.perf_counter()
    dist = distributed.setup(job.device, MAPPING_TIMEOUT)
    if dist.is_main and job.ranks not in (1, dist.world):
        reporter.log(
            f'torchrun started {dist.world} processes: the job\'s "ranks" ({job.ranks}) does not count here.', "warning"
        )
    try:
        model, head, metadata = load()
        plan = replace(build_plan(job, model, head, metadata, reporter), device=dist.device)
        shards = plan_shards(plan, dist.world)
        if dist.rank < len(shards):
            mine = run_shard(job, plan, shards[dist.rank], model, head, reporter)
        else:
            reporter.log(
                f"Rank {dist.rank}: the grid has {len(shards)} window rows, one per rank at most: nothing to do here.",
                "warning",
            )
            mine = None
        statuses: list[Any] = [None] * dist.world
        torch_dist.all_gather_object(statuses, mine)  # also waits for every rank's parts
        if not dist.is_main:
            return {"rank": dist.rank, "shard": mine}
        return finish(plan, shards, statuses[: len(shards)], reporter, time.perf_counter() - started)
    finally:
        distributed.teardown(dist)


def finish(plan, shards, statuses: list[dict], reporter: Reporter, seconds: float) -> dict[str, Any]:
    """Rank 0: the coverage of the whole run, then every output assembled from its parts."""
    from engine.mapping import parts  # lazy: keeps torch out of this module
    from engine.mapping.outputs import grid_summary, output_grids  # lazy: keeps torch out of this module
    from engine.mapping.plan import summary  # lazy: keeps torch out of this module

    coverage = Coverage(
        {name: list(dict.fromkeys(str(layer.path) for layer in m.layers)) for name, m in plan.modalities.items()}
    )
    for shard, status in zip(shards, statuses):
        if status is None:
            raise parts.missing_shard(shard, parts.parts_folder(next(iter(plan.outputs.files.values()))))
        coverage.merge(status["coverage"])
    try:
        coverage.check(reporter)
    except EngineError:
        parts.remove_parts(plan.outputs.files, keep_vrt_parts=False)  # nothing was written, parts included
        raise
    grids = output_grids(plan)
    for key, output in plan.outputs.files.items():
        part_grids = [output_grids(replace(plan, shard=s))[key] for s in shards]
        parts.assemble(output, key, grids[key], shards, part_grids)
    parts.remove_parts(plan.outputs.files)
    parts.remove_stale_parts(plan.outputs.files, shards)
    g = plan.geometry.patch_grid
    area_km2 = g.width * g.height * plan.geometry.patch_size_m**2 / 1e6
    skipped = sum(s["windows_without_data"] for s in statuses)
    resumed = [s.index + 1 for s, status in zip(shards, statuses) if status["resumed"]]
    reporter.log(
        f"Mapped {area_km2:.3f} km2 in {seconds:.1f} s over {len(shards)} shards"
        + (f" (shards {', '.join(map(str, resumed))} kept from an earlier run)" if resumed else "")
    )
    return {
        **plan.outputs.files,
        **summary(plan, grid_summary(grids)),
        "windows_without_data": skipped,
        "area_km2": area_km2,
        "seconds": seconds,
        "model_seconds": sum(s["model_seconds"] for s in statuses),
        "shards": [
            {
                "shard": s.index + 1,
                "patch_rows": list(s.rows),
                "windows_computed": status["windows_computed"],
                "resumed": status["resumed"],
                "seconds": status["seconds"],
            }
            for s, status in zip(shards, statuses)
        ],
    }


# ----- local ranks -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_source(source: str | dict) -> str | dict:
    """The job as the ranks receive it: a file path made absolute (they share this working folder)."""
    if isinstance(source, dict) or str(source).strip().startswith("{"):
        return source
    return str(Path(source).expanduser().resolve())


def _threads(job: Job, ranks: int) -> int:
    return job.threads or max(1, default_threads() // ranks)


def _rank_failure(rank: int, ranks: int, message: dict) -> Exception:
    text = f"Rank {rank} of {ranks} failed: {message.get('message', 'no message')}"
    if message.get("kind") == "cancelled":
        return Cancelled(text)
    if message.get("kind") == "input":
        return EngineError(text)
    return RuntimeError(text + ("\n" + message["detail"] if message.get("detail") else ""))


def launch(operation: str, source: str | dict, job: Job, reporter: Reporter) -> dict[str, Any]:
    """Start ``job.ranks`` ranks on this machine, relay them, return rank 0's result."""
    ranks, port, threads = job.ranks, _free_port(), _threads(job, job.ranks)
    request = json.dumps({"operation": operation, "params": {"job": _job_source(source)}, "threads": threads})
    reporter.log(f"Starting {ranks} ranks on this machine ({threads} threads each).")
    messages: queue.Queue = queue.Queue()
    processes = []
    try:
        for rank in range(ranks):
            env = {
                **os.environ,
                "RANK": str(rank),
                "WORLD_SIZE": str(ranks),
                "LOCAL_RANK": str(rank),
                "LOCAL_WORLD_SIZE": str(ranks),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": str(threads),
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "engine", "worker"],
                stdin=subprocess.PIPE,  # nosec B603  # this interpreter, fixed arguments
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            processes.append(process)
            process.stdin.write(request)
            process.stdin.close()
            threading.Thread(target=_relay, args=(rank, process, messages), daemon=True).start()
        return _follow(processes, messages, reporter)
    finally:
        _stop(processes)


def _relay(rank: int, process: subprocess.Popen, messages: queue.Queue) -> None:
    for line in process.stdout:
        try:
            messages.put((rank, json.loads(line)))
        except ValueError:
            continue  # not a protocol line
    messages.put((rank, None))


def _follow(processes: list[subprocess.Popen], messages: queue.Queue, reporter: Reporter) -> dict[str, Any]:
    ranks = len(processes)
    percents, results, ended = [0.0] * ranks, {}, 0
    while ended < ranks:
        try:
            rank, message = messages.get(timeout=0.5)  # a timeout keeps SIGTERM (cancel) deliverable
        except queue.Empty:
            continue
        if message is None:
            ended += 1
            if rank not in results:
                raise RuntimeError(
                    f"Rank {rank} of {ranks} ended (exit status {processes[rank].wait()}) without a "
                    "result; its error is on the standard error above."
                )
        elif message["type"] == "progress":
            percents[rank] = message["percent"]
            reporter.progress(sum(percents) / ranks, f"{ranks} ranks")
        elif message["type"] == "log":
            reporter.log(f"rank {rank}: {message['message']}", message.get("level", "info"))
        elif message["type"] == "result":
            results[rank] = message["result"]
        elif message["type"] == "error":
            raise _rank_failure(rank, ranks, message)
    return results[0]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
