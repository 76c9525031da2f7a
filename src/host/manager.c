/* host_manager: see host.h. The plugin manager (lua/core/plugins.lua)
 * side of the host: starting, stopping and reloading plugins through it,
 * its status, and the private core functions it drives plugin slots with. */
#include "host/host_private.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "host/watchdog.h"

static int l_plugin_cancel_registrations(lua_State *L)
{
    host_plugin_cancel_registrations(lua_touserdata(L, 1));
    return 0;
}

static int l_plugin_reroute(lua_State *L)
{
    host_plugin_reroute_inbox(lua_touserdata(L, 1));
    return 0;
}

static int l_plugin_drop_inbox(lua_State *L)
{
    host_plugin_drop_inbox(lua_touserdata(L, 1));
    return 0;
}

static int l_plugin_hold(lua_State *L)
{
    host_plugin_hold(lua_touserdata(L, 1), lua_toboolean(L, 2));
    return 0;
}

static int l_plugin_set_state(lua_State *L)
{
    static const char *const names[] = {"loaded", "initialized", "started", "stopped", "failed", NULL};
    host_plugin_set_state(lua_touserdata(L, 1), (enum plugin_state)luaL_checkoption(L, 2, NULL, names));
    return 0;
}

static int l_plugin_new(lua_State *L)
{
    struct host *h = host_from_lua(L);
    const char *name = luaL_checkstring(L, 1);
    for (struct plugin *p = h->plugins; p; p = p->next) {
        if (strcmp(p->name, name) == 0) {
            lua_pushlightuserdata(L, p);
            return 1;
        }
    }
    struct plugin *p = host_plugin_new(h, name);
    if (!p)
        return luaL_error(L, "out of memory");
    lua_pushlightuserdata(L, p);
    return 1;
}

static int l_plugin_record_error(lua_State *L)
{
    host_plugin_record_error(lua_touserdata(L, 1), luaL_checkstring(L, 2));
    return 0;
}

/* Calls fn(...) as plugin p outside any task (init/start/stop): errors are
 * returned, not raised, and waiting is refused there. */
static int l_plugin_call(lua_State *L)
{
    /* Arguments: the plugin (1; the manager passes it, nothing here needs
     * it), fn (2), fn's arguments. */
    int nargs = lua_gettop(L) - 2;
    lua_pushcfunction(L, host_traceback);
    lua_insert(L, 2);
    lua_State *outer = watchdog_enter(L);
    int rc = lua_pcall(L, nargs, 1, 2);
    watchdog_leave(outer);
    lua_sethook(L, NULL, 0, 0);
    if (rc != LUA_OK) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -2);
    return 2;
}

static int l_plugin_stats(lua_State *L)
{
    static const char *const states[] = {"loaded", "initialized", "started", "stopped", "failed"};
    struct plugin *p = lua_touserdata(L, 1);
    lua_createtable(L, 0, 8);
    lua_pushstring(L, states[p->state]);
    lua_setfield(L, -2, "state");
    lua_pushinteger(L, (lua_Integer)p->handled);
    lua_setfield(L, -2, "handled");
    lua_pushinteger(L, (lua_Integer)p->errors);
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, (lua_Integer)p->dropped);
    lua_setfield(L, -2, "dropped");
    lua_pushboolean(L, p->degraded);
    lua_setfield(L, -2, "degraded");
    lua_pushinteger(L, (lua_Integer)p->in_count);
    lua_setfield(L, -2, "inbox");
    lua_pushnumber(L, p->handler_seconds);
    lua_setfield(L, -2, "handler_seconds");
    if (p->last_error) {
        lua_pushstring(L, p->last_error);
        lua_setfield(L, -2, "last_error");
    }
    return 1;
}

static int l_refs(lua_State *L)
{
    lua_pushinteger(L, host_refs_outstanding(host_from_lua(L)));
    return 1;
}

void host_push_core_functions(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"plugin_new", l_plugin_new},
        {"plugin_call", l_plugin_call},
        {"plugin_set_state", l_plugin_set_state},
        {"plugin_hold", l_plugin_hold},
        {"plugin_cancel_registrations", l_plugin_cancel_registrations},
        {"plugin_reroute", l_plugin_reroute},
        {"plugin_drop_inbox", l_plugin_drop_inbox},
        {"plugin_record_error", l_plugin_record_error},
        {"plugin_stats", l_plugin_stats},
        {"refs", l_refs},
        {NULL, NULL},
    };
    luaL_setfuncs(L, fns, 0);
}

/* Calls manager.<fn>(args already pushed) protected; leaves nresults. */
static int call_manager(struct host *h, const char *fn, int nargs, int nresults)
{
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->manager_ref);
    lua_getfield(L, -1, fn);
    lua_remove(L, -2);
    lua_insert(L, -nargs - 1);
    return host_pcall(h, NULL, fn, nargs, nresults);
}

int host_start_plugins(struct host *h, int config_ref)
{
    lua_State *L = h->L;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "core.plugins");
    if (host_pcall(h, NULL, "loading the plugin manager", 1, 1) != LUA_OK)
        return -1;
    h->manager_ref = host_ref(h, L);

    if (h->api.push_core) {
        h->api.push_core(L);
    } else {
        lua_newtable(L);
        host_push_core_functions(L);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, config_ref);
    if (call_manager(h, "start", 2, 2) != LUA_OK)
        return -1;
    int ok = lua_toboolean(L, -2);
    if (!ok)
        log_error("plugins", "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return ok ? 0 : -1;
}

void host_stop_plugins(struct host *h)
{
    if (h->manager_ref == LUA_NOREF)
        return;
    call_manager(h, "stop", 0, 0);
}

static void on_reload_turn(uv_idle_t *idle)
{
    struct host *h = idle->data;
    uv_idle_stop(idle);
    h->reload_pending = 0;
    if (h->closing || h->manager_ref == LUA_NOREF)
        return;
    char *name = h->reload_name;
    h->reload_name = NULL;
    if (name)
        lua_pushstring(h->L, name);
    else
        lua_pushnil(h->L);
    free(name);
    if (call_manager(h, "reload", 1, 0) != LUA_OK)
        log_error("plugins", "reload failed");
}

void host_request_reload(struct host *h, const char *name)
{
    if (h->closing)
        return;
    /* Two requests before the turn: a named one and "all" merge to "all". */
    if (h->reload_pending && (!name || !h->reload_name || strcmp(name, h->reload_name) != 0)) {
        free(h->reload_name);
        h->reload_name = NULL;
    } else if (!h->reload_pending && name) {
        h->reload_name = strdup(name);
    }
    if (!h->reload_pending) {
        h->reload_pending = 1;
        uv_idle_start(&h->reload_idle, on_reload_turn);
    }
}

void host_foreach_plugin(struct host *h, host_stats_fn fn, void *ctx)
{
    for (struct plugin *p = h->plugins; p; p = p->next) {
        struct plugin_stats s = {
            .name = p->name,
            .state = p->state,
            .degraded = p->degraded,
            .handled = p->handled,
            .errors = p->errors,
            .dropped = p->dropped,
            .handler_seconds = p->handler_seconds,
            .last_error = p->last_error,
            .inbox_depth = p->in_count,
            .hist = p->hist,
        };
        fn(&s, ctx);
    }
}

char *host_status_json(struct host *h)
{
    if (h->manager_ref == LUA_NOREF || h->closing)
        return NULL;
    lua_State *L = h->L;
    if (call_manager(h, "status_json", 0, 1) != LUA_OK)
        return NULL;
    const char *s = lua_tostring(L, -1);
    char *copy = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return copy;
}
