"""The engine worker, with the official AnySat entry pointed at the test's local hub file
(its sha256 and size in OMNISAT_TEST_HUB_ENTRY): the walk-through downloads a synthetic checkpoint in
the reference layout from 127.0.0.1 exactly as it would download the published one. Test use only."""

import json
import os
import runpy
import sys
from dataclasses import replace

from engine.models import downloads

downloads.DOWNLOADS["anysat-base"] = replace(
    downloads.DOWNLOADS["anysat-base"], **json.loads(os.environ["OMNISAT_TEST_HUB_ENTRY"])
)
# started as `python hub_worker.py -m engine worker`: run the engine's entry point with its own arguments
sys.argv = ["engine", *sys.argv[3:]] if sys.argv[1:3] == ["-m", "engine"] else ["engine", *sys.argv[1:]]
runpy.run_module("engine", run_name="__main__", alter_sys=True)
