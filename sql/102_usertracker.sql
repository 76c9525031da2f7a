-- UserTracker (lua/plugins/usertracker.lua): sessions per channel and what
-- is known about each user. Names compare case-insensitively, as CyTube's do.

-- One row per presence of a user in a channel; left_at is NULL while open.
CREATE TABLE daz_usertracker_sessions (
    id               bigserial PRIMARY KEY,
    channel          text NOT NULL,
    username         text NOT NULL,
    rank             double precision,
    joined_at        timestamptz NOT NULL,
    from_list        boolean NOT NULL DEFAULT false,  -- found in a user list (present when the bot came), not a join seen live
    left_at          timestamptz,
    end_reason       text,          -- 'left', or 'absent' (gone from the list after the bot reconnected)
    last_activity_at timestamptz,
    messages         integer NOT NULL DEFAULT 0,
    afk_since        timestamptz,
    afk_seconds      double precision NOT NULL DEFAULT 0
);
-- At most one open session per user and channel.
CREATE UNIQUE INDEX daz_usertracker_sessions_open
    ON daz_usertracker_sessions (channel, lower(username)) WHERE left_at IS NULL;
CREATE INDEX daz_usertracker_sessions_user ON daz_usertracker_sessions (lower(username), joined_at);
CREATE INDEX daz_usertracker_sessions_joined ON daz_usertracker_sessions (channel, joined_at);

-- Last seen, last message, AFK state: one row per user and channel.
CREATE TABLE daz_usertracker_users (
    channel         text NOT NULL,
    name_key        text NOT NULL,   -- lower(username)
    username        text NOT NULL,
    rank            double precision,
    first_seen      timestamptz NOT NULL,
    last_seen       timestamptz NOT NULL,
    last_message    text,
    last_message_at timestamptz,
    messages        bigint NOT NULL DEFAULT 0,
    sessions        bigint NOT NULL DEFAULT 0,
    afk             boolean NOT NULL DEFAULT false,
    PRIMARY KEY (channel, name_key)
);
