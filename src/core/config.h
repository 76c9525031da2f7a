/* config: runs config.lua in a sandbox (lua/core/config.lua, embedded),
 * applies DAZ_* environment and flag overrides, validates, and exposes the
 * core settings as a C struct. Uses Lua and log. */
#ifndef DAZ_CONFIG_H
#define DAZ_CONFIG_H

#include <lua.h>

#include "core/log.h"

/* A setting forced from outside the file: DAZ_* variables, then flags. */
struct config_override {
    const char *path;   /* "health.port" */
    const char *value;  /* text, converted by the setting's type */
    const char *source; /* "DAZ_HEALTH__PORT" or "-health-port" */
};

struct daz_config {
    enum log_level log_level;
    enum log_format log_format;
    int health_enabled;
    int health_port;
    char *health_bind;
    long health_live_timeout_ms;
    long health_refresh_ms;
    long bus_default_capacity;
    long bus_dispatch_per_turn;
    long host_instruction_budget;
    long host_budget_after_ms;
    long host_degraded_after_errors;
    long host_inbox_size;
    int room_count;
    int enabled_room_count; /* rooms with enabled = true: the channels joined */
    int database_configured; /* core.database names a server; else the local cluster */
    char *description; /* the whole config on one line, for the debug log */
    int lua_ref; /* registry ref to the validated config table in the host state */
};

/* Loads and validates. On success returns 0 and fills *out (free with
 * config_free). On failure returns -1 and writes every problem, one per line,
 * to `problems` (which the caller prints). Registers secrets with the logger. */
int config_load(lua_State *L, const char *path, const struct config_override *overrides,
                int override_count, struct daz_config *out, char *problems, size_t problems_size);

/* Collects DAZ_<SECTION>__<KEY> variables from the environment into
 * overrides[] (strings point into storage owned by the caller via `arena`).
 * Returns how many were found, at most `max`. */
int config_env_overrides(struct config_override *overrides, int max, char *arena, size_t arena_size);

void config_free(lua_State *L, struct daz_config *cfg);

/* Calls fn(prefix, size, ctx) for each event_bus.buffer_sizes entry. */
typedef int (*config_size_fn)(const char *prefix, long size, void *ctx);
int config_each_buffer_size(lua_State *L, const struct daz_config *cfg, config_size_fn fn, void *ctx);

#endif
