-- EventFilter (lua/plugins/eventfilter.lua): the command registry and every
-- command execution.

-- One row per registered command; `plugin` owns it. Kept across restarts so
-- the registry can be inspected; `active` is false for commands whose plugin
-- has not registered them since the last start.
CREATE TABLE daz_eventfilter_commands (
    name          text PRIMARY KEY,
    plugin        text NOT NULL,
    aliases       jsonb NOT NULL DEFAULT '[]',
    description   text NOT NULL DEFAULT '',
    usage         text NOT NULL DEFAULT '',
    min_rank      double precision NOT NULL DEFAULT 0,
    admin_only    boolean NOT NULL DEFAULT false,
    cooldown_s    double precision NOT NULL DEFAULT 0,
    active        boolean NOT NULL DEFAULT true,
    registered_at timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Who ran what, how it went, and how long it took. result: ok, error,
-- timeout, denied (rank/admin), cooldown, ratelimited, invalid (bad args).
CREATE TABLE daz_eventfilter_history (
    id          bigserial PRIMARY KEY,
    channel     text NOT NULL,
    username    text NOT NULL,
    command     text NOT NULL,
    args        jsonb NOT NULL DEFAULT '[]',
    pm          boolean NOT NULL DEFAULT false,
    rank        double precision,
    result      text NOT NULL,
    error       text,
    duration_ms double precision,
    executed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daz_eventfilter_history_time ON daz_eventfilter_history (channel, executed_at);
CREATE INDEX daz_eventfilter_history_user ON daz_eventfilter_history (username, executed_at);
