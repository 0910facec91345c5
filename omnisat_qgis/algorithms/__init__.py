"""The Processing algorithms; the provider registers every class in ALGORITHMS."""

from omnisat_qgis.algorithms.areas import AreaReport, Assess, SampleMap
from omnisat_qgis.algorithms.learning import LearnArea
from omnisat_qgis.algorithms.mapping import Classify, Embed, NormalizationStats
from omnisat_qgis.algorithms.models import FetchModel
from omnisat_qgis.algorithms.parcels import ClassifyParcels
from omnisat_qgis.algorithms.probes import ApplyProbe, Change, FitProbe
from omnisat_qgis.algorithms.raster_tools import NormalizedIndex
from omnisat_qgis.algorithms.setup import SetupEngine

ALGORITHMS = [
    Classify,
    Embed,
    NormalizationStats,
    FitProbe,
    ApplyProbe,
    Change,
    NormalizedIndex,
    SampleMap,
    Assess,
    AreaReport,
    SetupEngine,
    FetchModel,
    LearnArea,
    ClassifyParcels,
]
