-- Analytics (lua/plugins/analytics.lua): aggregates recomputed from the logs
-- (daz_chat_log, daz_usertracker_sessions, daz_mediatracker_plays) and from
-- user-count samples. Every write is an upsert of a whole bucket, so running
-- it again, after a restart or a replay, gives the same rows.

-- Users present, sampled once a minute (peak and average come from here).
CREATE TABLE daz_analytics_user_samples (
    channel     text NOT NULL,
    sample_time timestamptz NOT NULL,   -- truncated to the minute
    users       integer NOT NULL,
    PRIMARY KEY (channel, sample_time)
);

CREATE TABLE daz_analytics_hourly (
    channel         text NOT NULL,
    hour            timestamptz NOT NULL,
    messages        bigint NOT NULL DEFAULT 0,
    unique_chatters integer NOT NULL DEFAULT 0,
    joins           integer NOT NULL DEFAULT 0,
    media_plays     integer NOT NULL DEFAULT 0,
    peak_users      integer NOT NULL DEFAULT 0,
    avg_users       double precision NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, hour)
);

CREATE TABLE daz_analytics_daily (
    channel         text NOT NULL,
    day             date NOT NULL,
    messages        bigint NOT NULL DEFAULT 0,
    unique_chatters integer NOT NULL DEFAULT 0,
    joins           integer NOT NULL DEFAULT 0,
    media_plays     integer NOT NULL DEFAULT 0,
    peak_users      integer NOT NULL DEFAULT 0,
    avg_users       double precision NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel, day)
);

-- Messages per user and day.
CREATE TABLE daz_analytics_user_daily (
    channel  text NOT NULL,
    day      date NOT NULL,
    username text NOT NULL,
    messages bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, day, username)
);
CREATE INDEX daz_analytics_user_daily_day ON daz_analytics_user_daily (channel, day);
