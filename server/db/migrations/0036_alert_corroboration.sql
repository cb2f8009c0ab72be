-- 0036 alerts: the edge is authoritative for local alarms. While an edge alarm (`<ch>:edge`) is
-- active, the server's threshold rule on the same point, device and channel opens no second alert;
-- its first verdict is written on the edge alert's timeline (kind 'corroborated') and stamped here.
ALTER TABLE alerts ADD COLUMN corroborated_at timestamptz;
