"""The dock's embedding cache key: it changes with what changes the embeddings, and only then."""

from __future__ import annotations

import os

from omnisat_qgis.gui.session import Advanced, Extent, ModalityInput, embedding_key
from omnisat_qgis.model_catalog import model_info
from omnisat_qgis.paths import resources_dir

VRT = """<VRTDataset rasterXSize="10" rasterYSize="10">
  <VRTRasterBand dataType="UInt16" band="1">
{stats}    <SimpleSource><SourceFilename relativeToVRT="1">b02.jp2</SourceFilename></SimpleSource>
  </VRTRasterBand>
</VRTDataset>
"""
STATS = """    <Metadata><MDI key="STATISTICS_MAXIMUM">812</MDI><MDI key="STATISTICS_MEAN">33.5</MDI></Metadata>
    <Histograms><HistItem><HistMin>0</HistMin><BucketCount>2</BucketCount><HistCounts>4|6</HistCounts></HistItem>
    </Histograms>
"""


EXTENT = Extent((0, 0, 100, 100), "EPSG:32633")


def key(files, extent=EXTENT, level="patch", advanced=None):
    advanced = advanced or Advanced()
    model = model_info(resources_dir() / "models" / "omnisat-small.safetensors")
    return embedding_key(model, [ModalityInput("s2", [str(f) for f in files], ["2020-01-01"])], extent, level, advanced)


def test_key_follows_inputs_extent_level_and_precision(tmp_path):
    tif = tmp_path / "S2_20200101.tif"
    tif.write_bytes(b"first")
    first = key([tif])
    assert key([tif]) == first
    assert key([tif], extent=Extent((0, 0, 100, 110), "EPSG:32633")) != first
    assert key([tif], level="local") != first
    assert key([tif], advanced=Advanced(precision="fp32")) != first
    tif.write_bytes(b"second")
    os.utime(tif, ns=(1, 1))
    assert key([tif]) != first


def test_statistics_gdal_saves_in_a_vrt_keep_its_key(tmp_path):
    vrt = tmp_path / "S2_20200101.vrt"
    vrt.write_text(VRT.format(stats=""))
    before = key([vrt])
    vrt.write_text(VRT.format(stats=STATS))
    assert key([vrt]) == before
    vrt.write_text(VRT.format(stats="").replace("b02.jp2", "b03.jp2"))
    assert key([vrt]) != before
