"""The smart-city traffic demo (``tierpipe demo``): SUMO cameras, QueueNet split over camera -> gateway
-> edge, closed-loop traffic lights. Its SUMO and plotting libraries come with the ``demo`` extra
(``pip install 'tierpipe[demo]'``); its data (weights, scenarios) is package data, read with
:mod:`importlib.resources`."""

from importlib.resources import files
from pathlib import Path

# the package's folder wherever it is installed (a checkout, site-packages): data/ and scenarios/ beside the code
HERE = Path(str(files(__name__)))
DEFAULT_SCENARIO = "midtown"  # the shipped scenario `tierpipe demo` runs without --scenario
