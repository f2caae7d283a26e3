-- When a heartbeat's monitoring last started: its creation, or the moment it was last switched
-- from disabled to enabled. Its interval runs from the later of this and its last ping, so a
-- heartbeat enabled after a long pause (or created disabled) is not missed the moment it is
-- switched on. NULL (rows from before) reads as its creation.
ALTER TABLE heartbeats ADD COLUMN enabled_at BIGINT;
