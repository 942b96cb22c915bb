"""The vindex kinds, by the ``type`` a VSchema names them with."""

from __future__ import annotations

from multigres.vschema.vindexes.base import Destination, FunctionalVindex, Vindex
from multigres.vschema.vindexes.hash import HashVindex
from multigres.vschema.vindexes.lookup import LookupUniqueVindex, LookupVindex
from multigres.vschema.vindexes.multicol import MulticolVindex
from multigres.vschema.vindexes.numeric import NumericVindex
from multigres.vschema.vindexes.unicode import UnicodeLooseXxhashVindex, UnicodeXxhashVindex
from multigres.vschema.vindexes.xxhash import XxhashVindex

VINDEX_TYPES: dict[str, type[Vindex]] = {
    cls.type_name: cls
    for cls in (
        HashVindex,
        XxhashVindex,
        NumericVindex,
        UnicodeXxhashVindex,
        UnicodeLooseXxhashVindex,
        MulticolVindex,
        LookupUniqueVindex,
        LookupVindex,
    )
}

__all__ = [
    "VINDEX_TYPES",
    "Destination",
    "FunctionalVindex",
    "HashVindex",
    "LookupUniqueVindex",
    "LookupVindex",
    "MulticolVindex",
    "NumericVindex",
    "UnicodeLooseXxhashVindex",
    "UnicodeXxhashVindex",
    "Vindex",
    "XxhashVindex",
]
