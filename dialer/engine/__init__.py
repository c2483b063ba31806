"""The dialing engine (see :mod:`dialer.engine.core`)."""

from dialer.engine.core import (
    DatabaseBusy, Engine, EngineClock, EngineSettings, FINAL_FLUSH_SECONDS, FINAL_FLUSH_TRIES,
    HANGUP_RECORD_FAMILY, OPT_OUT_EVENT, _abandon_figures, _engine_order, _other_engines,
    _parse_hangup_record, lead_channel, new_engine_id, shared_figures,
)

__all__ = [
    "DatabaseBusy", "Engine", "EngineClock", "EngineSettings", "FINAL_FLUSH_SECONDS", "FINAL_FLUSH_TRIES",
    "HANGUP_RECORD_FAMILY", "OPT_OUT_EVENT", "lead_channel", "new_engine_id", "shared_figures",
]
