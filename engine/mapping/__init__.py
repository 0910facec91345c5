"""Tiled inference: a job becomes one Plan, then read -> model -> outputs, window batch by batch.

- ``plan.py``: the only reader of the Job: inputs, grids, windows, device, statistics, outputs;
- ``read.py``: reading and normalising windows (``keep_dates``, shared with training);
- ``levels.py``: the registry of embedding levels (what each reads, its width, grid, packing);
- ``forward.py``: the model call on a batch;
- ``outputs.py``: the output rasters and their writers;
- ``run.py``: the orchestration, ``run_map``;
- ``shards.py``, ``parts.py``, ``ranks.py``: one job over several processes (torchrun or the
  job's ``"ranks"``): bands of window rows, their part files and manifests, the ranks' run.
"""
