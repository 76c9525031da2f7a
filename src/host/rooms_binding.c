/* lua_rooms: see lua_rooms.h. */
#include "host/rooms_binding.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static struct cytube *the_rooms;

static long int_field(lua_State *L, int t, const char *key, long def)
{
    lua_getfield(L, t, key);
    long v = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

static const char *str_field(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    const char *s = lua_tostring(L, -1); /* the config table keeps the string alive */
    lua_pop(L, 1);
    return s;
}

struct cytube *lua_rooms_create(lua_State *L, int config_ref, uv_loop_t *loop, struct bus *bus)
{
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, config_ref);
    lua_getfield(L, -1, "core");
    int core = lua_gettop(L);
    if (!lua_istable(L, core)) {
        lua_settop(L, top);
        return NULL;
    }
    struct cytube_options o;
    cytube_default_options(&o);
    o.login_delay_ms = int_field(L, core, "login_delay_ms", o.login_delay_ms);
    o.connect_timeout_ms = int_field(L, core, "connect_timeout_ms", o.connect_timeout_ms);
    o.backoff_initial_ms = int_field(L, core, "backoff_initial_ms", o.backoff_initial_ms);
    o.backoff_max_ms = int_field(L, core, "backoff_max_ms", o.backoff_max_ms);
    o.duplicate_login_backoff_ms = int_field(L, core, "duplicate_login_backoff_ms", o.duplicate_login_backoff_ms);
    o.guest_retry_ms = int_field(L, core, "guest_retry_ms", o.guest_retry_ms);
    o.server_connect_burst = (int)int_field(L, core, "server_connect_burst", o.server_connect_burst);
    o.server_connect_interval_ms = int_field(L, core, "server_connect_interval_ms", o.server_connect_interval_ms);
    o.outbound_queue_size = (int)int_field(L, core, "outbound_queue_size", o.outbound_queue_size);
    o.chat_max_length = (int)int_field(L, core, "chat_max_length", o.chat_max_length);
    const char *ca = str_field(L, core, "tls_ca_file"); /* the config table keeps it alive */
    if (ca)
        o.tls_ca_file = ca;
    lua_getfield(L, core, "verify_tls");
    if (lua_isboolean(L, -1))
        o.verify_tls = lua_toboolean(L, -1);
    lua_pop(L, 1);

    struct cytube *cy = cytube_new(loop, bus, &o);
    if (!cy) {
        lua_settop(L, top);
        return NULL;
    }
    const char *server = str_field(L, core, "server");
    lua_getfield(L, core, "rooms");
    int rooms = lua_gettop(L);
    lua_Integer n = lua_istable(L, rooms) ? luaL_len(L, rooms) : 0;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, rooms, i);
        int t = lua_gettop(L);
        struct cytube_room_config rc = {0};
        rc.channel = str_field(L, t, "channel");
        rc.server = str_field(L, t, "server");
        if (!rc.server)
            rc.server = server;
        rc.username = str_field(L, t, "username");
        rc.password = str_field(L, t, "password");
        rc.channel_password = str_field(L, t, "channel_password");
        lua_getfield(L, t, "enabled");
        rc.enabled = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
        lua_pop(L, 1);
        rc.reconnect_attempts = (int)int_field(L, t, "reconnect_attempts", 10);
        lua_getfield(L, t, "cooldown_minutes");
        rc.cooldown_minutes = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 2;
        lua_pop(L, 1);
        if (cytube_add_room(cy, &rc) != 0)
            log_error("cytube", "core.rooms[%d]: cannot add room %s (listed twice?)", (int)i,
                      rc.channel ? rc.channel : "?");
        lua_settop(L, rooms);
    }
    lua_settop(L, top);
    return cy;
}

/* JSON -> Lua. null becomes nil (so a null inside a list leaves a hole). */
static void push_json(lua_State *L, json_t *v, int depth)
{
    if (depth > 64 || !lua_checkstack(L, 4)) {
        lua_pushnil(L);
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            push_json(L, x, depth + 1);
            lua_setfield(L, -2, k);
        }
        break;
    }
    case JSON_ARRAY: {
        lua_createtable(L, (int)json_array_size(v), 0);
        size_t i;
        json_t *x;
        json_array_foreach(v, i, x) {
            push_json(L, x, depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        break;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d == (double)(lua_Integer)d && d > -9.0e15 && d < 9.0e15)
            lua_pushinteger(L, (lua_Integer)d); /* rank 3.0 reads as 3 */
        else
            lua_pushnumber(L, d);
        break;
    }
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        break;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        break;
    default:
        lua_pushnil(L);
        break;
    }
}

/* rooms.get(channel) -> table or nil: a fresh copy each call. */
static int rooms_get_l(lua_State *L)
{
    const char *channel = luaL_checkstring(L, 1);
    json_t *snap = the_rooms ? cytube_room_snapshot(the_rooms, channel) : NULL;
    if (!snap) {
        lua_pushnil(L);
        return 1;
    }
    push_json(L, snap, 0);
    json_decref(snap);
    return 1;
}

/* rooms.list() -> { "channel", ... } in config order. */
static int rooms_list_l(lua_State *L)
{
    json_t *list = the_rooms ? cytube_room_list(the_rooms) : NULL;
    if (!list) {
        lua_newtable(L);
        return 1;
    }
    push_json(L, list, 0);
    json_decref(list);
    return 1;
}

void lua_rooms_open(lua_State *L, struct cytube *cy)
{
    the_rooms = cy;
    static const luaL_Reg fns[] = {{"get", rooms_get_l}, {"list", rooms_list_l}, {NULL, NULL}};
    luaL_newlib(L, fns);
    lua_getglobal(L, "daz");
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "rooms");
    }
    lua_pop(L, 1);
    lua_setglobal(L, "rooms");
}

void lua_rooms_close(void) { the_rooms = NULL; }
