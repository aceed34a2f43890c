"""The singer catalogue: enrolment, calibrated identification with evidence, verification metrics."""
from .calibrate import eer, min_dcf
from .catalogue import Catalogue

__all__ = ["Catalogue", "eer", "min_dcf"]
