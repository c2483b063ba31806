"""Leads in: phone normalisation (:mod:`.phones`) and CSV import (:mod:`.importer`)."""

from dialer.leads.importer import ImportResult, LeadFileError, import_leads, read_header
from dialer.leads.phones import InvalidPhone, InvalidTimezone, Phone, PhoneNormalizer, normalize_timezone

__all__ = [
    "ImportResult",
    "InvalidPhone",
    "InvalidTimezone",
    "LeadFileError",
    "Phone",
    "PhoneNormalizer",
    "import_leads",
    "normalize_timezone",
    "read_header",
]
