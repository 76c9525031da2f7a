/* config: see config.h. The rules live in lua/core/config.lua; this file
 * feeds it the overrides and copies out what the C core needs. */
#include "core/config.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>

extern char **environ;

int config_env_overrides(struct config_override *overrides, int max, char *arena, size_t arena_size)
{
    int n = 0;
    size_t used = 0;
    for (char **e = environ; *e && n < max; e++) {
        const char *entry = *e;
        const char *eq = strchr(entry, '=');
        /* Only DAZ_<A>__<B>: plain DAZ_PASSWORD and friends are left for
         * config.lua to read with os.getenv. */
        if (strncmp(entry, "DAZ_", 4) != 0 || !eq || !strstr(entry, "__") || strstr(entry, "__") > eq)
            continue;
        size_t name_len = (size_t)(eq - entry);
        size_t need = 2 * name_len + 2;
        if (used + need > arena_size)
            break;
        char *source = arena + used;
        memcpy(source, entry, name_len);
        source[name_len] = '\0';
        char *path = source + name_len + 1;
        size_t p = 0;
        for (const char *c = entry + 4; c < eq; c++) {
            if (c[0] == '_' && c[1] == '_') {
                path[p++] = '.';
                c++;
            } else {
                path[p++] = (char)tolower((unsigned char)*c);
            }
        }
        path[p] = '\0';
        used += need;
        overrides[n].path = path;
        overrides[n].value = eq + 1;
        overrides[n].source = source;
        n++;
    }
    return n;
}

/* Reads t[key] as a string (or NULL) from the table at the top of the stack. */
static char *dup_field(lua_State *L, const char *key)
{
    lua_getfield(L, -1, key);
    const char *s = lua_tostring(L, -1);
    char *copy = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return copy;
}

static lua_Integer int_field(lua_State *L, const char *key)
{
    lua_getfield(L, -1, key);
    lua_Integer v = lua_tointeger(L, -1);
    lua_pop(L, 1);
    return v;
}

static void append(char *buf, size_t size, size_t *used, const char *line)
{
    int w = snprintf(buf + *used, size - *used, "%s\n", line);
    if (w > 0)
        *used = *used + (size_t)w < size ? *used + (size_t)w : size - 1;
}

int config_load(lua_State *L, const char *path, const struct config_override *overrides,
                int override_count, struct daz_config *out, char *problems, size_t problems_size)
{
    size_t used = 0;
    int top = lua_gettop(L);
    memset(out, 0, sizeof *out);
    out->lua_ref = LUA_NOREF;
    problems[0] = '\0';

    lua_getglobal(L, "require");
    lua_pushstring(L, "core.config");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        append(problems, problems_size, &used, lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, -1, "load");
    lua_pushstring(L, path);
    lua_createtable(L, override_count, 0);
    for (int i = 0; i < override_count; i++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, overrides[i].path);
        lua_setfield(L, -2, "path");
        lua_pushstring(L, overrides[i].value);
        lua_setfield(L, -2, "value");
        lua_pushstring(L, overrides[i].source);
        lua_setfield(L, -2, "source");
        lua_rawseti(L, -2, i + 1);
    }
    if (lua_pcall(L, 2, 2, 0) != LUA_OK) {
        /* A bug in the checker itself, not in the operator's file. */
        append(problems, problems_size, &used, lua_tostring(L, -1));
        lua_settop(L, top);
        return -1;
    }
    if (lua_isnil(L, -2)) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            append(problems, problems_size, &used, lua_tostring(L, -1));
            lua_pop(L, 1);
        }
        lua_settop(L, top);
        return -1;
    }

    /* Secrets first, so nothing below can log one. */
    lua_Integer nsecrets = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= nsecrets; i++) {
        lua_rawgeti(L, -1, i);
        log_add_secret(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    lua_getfield(L, -1, "log");
    char *level = dup_field(L, "level"), *format = dup_field(L, "format");
    if (log_level_from_name(level, &out->log_level) != 0)
        out->log_level = LOG_INFO;
    out->log_format = strcmp(format, "json") == 0   ? LOG_FORMAT_JSON
                      : strcmp(format, "text") == 0 ? LOG_FORMAT_TEXT
                                                    : LOG_FORMAT_AUTO;
    free(level);
    free(format);
    lua_pop(L, 1);

    lua_getfield(L, -1, "health");
    lua_getfield(L, -1, "enabled");
    out->health_enabled = lua_toboolean(L, -1);
    lua_pop(L, 1);
    out->health_port = (int)int_field(L, "port");
    out->health_bind = dup_field(L, "bind");
    out->health_live_timeout_ms = (long)int_field(L, "live_timeout_ms");
    out->health_refresh_ms = (long)int_field(L, "refresh_ms");
    lua_pop(L, 1);

    lua_getfield(L, -1, "event_bus");
    out->bus_default_capacity = (long)int_field(L, "default_buffer_size");
    out->bus_dispatch_per_turn = (long)int_field(L, "dispatch_per_turn");
    lua_pop(L, 1);

    lua_getfield(L, -1, "plugin_host");
    out->host_instruction_budget = (long)int_field(L, "instruction_budget");
    out->host_budget_after_ms = (long)int_field(L, "budget_after_ms");
    out->host_degraded_after_errors = (long)int_field(L, "degraded_after_errors");
    out->host_inbox_size = (long)int_field(L, "inbox_size");
    lua_pop(L, 1);

    lua_getfield(L, -1, "core");
    lua_getfield(L, -1, "rooms");
    out->room_count = (int)luaL_len(L, -1);
    for (int i = 1; i <= out->room_count; i++) {
        lua_rawgeti(L, -1, i);
        lua_getfield(L, -1, "enabled");
        out->enabled_room_count += lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    lua_pop(L, 1);
    lua_getfield(L, -1, "database");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "url");
        lua_getfield(L, -2, "host");
        out->database_configured = !lua_isnil(L, -1) || !lua_isnil(L, -2);
        lua_pop(L, 2);
    }
    lua_pop(L, 2);

    if (out->log_level <= LOG_DEBUG) { /* only the debug log reads it (~0.5 ms at start) */
        lua_getfield(L, -2, "describe");
        lua_pushvalue(L, -2);
        if (lua_pcall(L, 1, 1, 0) == LUA_OK)
            out->description = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    out->lua_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the config table */
    lua_settop(L, top);
    /* The checker is needed once: its schema and code (~64 kB of Lua heap)
     * need not stay loaded; a later require compiles it again. */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "loaded");
    lua_pushnil(L);
    lua_setfield(L, -2, "core.config");
    lua_settop(L, top);
    return 0;
}

void config_free(lua_State *L, struct daz_config *cfg)
{
    free(cfg->health_bind);
    free(cfg->description);
    cfg->health_bind = NULL;
    cfg->description = NULL;
    if (L && cfg->lua_ref != LUA_NOREF)
        luaL_unref(L, LUA_REGISTRYINDEX, cfg->lua_ref);
    cfg->lua_ref = LUA_NOREF;
}

int config_each_buffer_size(lua_State *L, const struct daz_config *cfg, config_size_fn fn, void *ctx)
{
    int rc = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, cfg->lua_ref);
    lua_getfield(L, -1, "event_bus");
    lua_getfield(L, -1, "buffer_sizes");
    lua_pushnil(L);
    while (rc == 0 && lua_next(L, -2) != 0) {
        rc = fn(lua_tostring(L, -2), (long)lua_tointeger(L, -1), ctx);
        lua_pop(L, 1);
    }
    if (rc != 0)
        lua_pop(L, 2); /* key and table left by the interrupted lua_next */
    else
        lua_pop(L, 1);
    lua_pop(L, 2);
    return rc;
}
