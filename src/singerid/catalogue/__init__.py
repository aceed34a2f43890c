"""The singer catalogue: enrolment, calibrated identification with evidence, verification metrics."""
from .calibrate import eer, min_dcf
from .catalogue import Catalogue
from .store import CatalogueError

__all__ = ["Catalogue", "CatalogueError", "eer", "min_dcf"]
