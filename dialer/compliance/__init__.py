"""The telemarketing rules (:mod:`.rules`) and the abandon rate measured against them (:mod:`.abandon`)."""
