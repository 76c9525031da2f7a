-- MediaTracker (lua/plugins/mediatracker.lua): plays, the mirrored queue and
-- the media library.

-- Every play: when it started and how long it really played.
CREATE TABLE daz_mediatracker_plays (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    media_type  text NOT NULL,
    media_id    text NOT NULL,
    title       text,
    duration_s  double precision,   -- the media's length (0 for live)
    uid         bigint,             -- playlist uid, when known
    queued_by   text,
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,        -- NULL while playing
    played_s    double precision NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX daz_mediatracker_plays_open ON daz_mediatracker_plays (channel) WHERE ended_at IS NULL;
CREATE INDEX daz_mediatracker_plays_started ON daz_mediatracker_plays (channel, started_at);
CREATE INDEX daz_mediatracker_plays_media ON daz_mediatracker_plays (media_type, media_id);

-- The channel's playlist, mirrored in order.
CREATE TABLE daz_mediatracker_queue (
    channel     text NOT NULL,
    position    integer NOT NULL,
    uid         bigint NOT NULL,
    media_type  text NOT NULL,
    media_id    text NOT NULL,
    title       text,
    duration_s  double precision,
    temp        boolean NOT NULL DEFAULT false,
    queued_by   text,
    PRIMARY KEY (channel, uid)
);

-- Every medium ever played.
CREATE TABLE daz_mediatracker_media (
    media_type   text NOT NULL,
    media_id     text NOT NULL,
    title        text,
    duration_s   double precision,
    first_played timestamptz NOT NULL,
    last_played  timestamptz NOT NULL,
    play_count   bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (media_type, media_id)
);
