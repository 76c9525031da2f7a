-- Reconnect backoff per room (src/room_backoff.c), so a restarted Daz keeps
-- waiting where the previous one left off instead of hammering the server.
CREATE TABLE daz_room_backoff (
    channel         text        PRIMARY KEY,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);
