-- Core tables of DESIGN §6. The batch log writer fills the logs through the
-- logger rules in config.lua; a table with a unique key besides its primary
-- key is written with INSERT ... ON CONFLICT DO NOTHING, so replays and
-- retried batches insert nothing twice.

-- Every event, raw (logger rule "core_events", off by default).
CREATE TABLE daz_core_events (
    id          bigserial PRIMARY KEY,
    event_type  text NOT NULL,
    channel     text,
    payload     jsonb,
    tags        jsonb,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daz_core_events_type_time ON daz_core_events (event_type, received_at);
CREATE INDEX daz_core_events_channel_time ON daz_core_events (channel, received_at);

-- Chat as received: `message` is CyTube's text (HTML-escaped) unchanged.
CREATE TABLE daz_chat_log (
    id           bigserial PRIMARY KEY,
    channel      text NOT NULL,
    username     text NOT NULL,
    message      text NOT NULL,
    message_time timestamptz NOT NULL,  -- CyTube's `time`
    rank         integer,
    meta         jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);
-- CyTube replays recent chat on every join: the same line must not be stored twice.
CREATE UNIQUE INDEX daz_chat_log_dedupe ON daz_chat_log (channel, message_time, username, md5(message));
CREATE INDEX daz_chat_log_channel_time ON daz_chat_log (channel, message_time);
CREATE INDEX daz_chat_log_username ON daz_chat_log (username, message_time);

-- Joins and leaves (addUser / userLeave).
CREATE TABLE daz_user_activity (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    username    text NOT NULL,
    event_type  text NOT NULL CHECK (event_type IN ('join', 'leave')),
    rank        integer,
    meta        jsonb,
    event_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daz_user_activity_channel_time ON daz_user_activity (channel, event_time);
CREATE INDEX daz_user_activity_username ON daz_user_activity (username, event_time);

-- Private messages (both directions: CyTube sends a PM to both parties).
CREATE TABLE daz_private_messages (
    id           bigserial PRIMARY KEY,
    channel      text NOT NULL,
    from_user    text NOT NULL,
    to_user      text NOT NULL,
    message      text NOT NULL,
    message_time timestamptz NOT NULL,
    meta         jsonb,
    received_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX daz_private_messages_dedupe
    ON daz_private_messages (channel, message_time, from_user, to_user, md5(message));
CREATE INDEX daz_private_messages_users ON daz_private_messages (from_user, to_user, message_time);

-- Counters and figures plugins keep (one row per plugin and stat).
CREATE TABLE daz_plugin_stats (
    plugin     text NOT NULL,
    stat       text NOT NULL,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plugin, stat)
);
