/* event_json: see event_json.h. */
#include "core/event_json.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 1000 /* lua-cjson's decode_max_depth default */

static void release_native(void *native)
{
    json_decref(native);
}

static char *encode_native(void *native, size_t *len)
{
    char *text = json_dumps(native, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text)
        *len = strlen(text);
    return text;
}

static const struct event_native_hooks NATIVE_HOOKS = {release_native, encode_native};

struct event *event_new_json(const char *type, const char *room, int priority, json_t *data)
{
    /* Whoever makes native events installs the hooks that free and encode
     * them; setting the same pointers again is harmless. */
    event_set_native_hooks(&NATIVE_HOOKS);
    struct event *ev = event_new_take(type, room, priority, NULL, 0);
    if (ev && data)
        ev->native = json_incref(data);
    return ev;
}

json_t *event_json_value(const struct event *ev)
{
    return ev->native;
}

static int push(lua_State *L, const json_t *v, int depth)
{
    if (depth > MAX_DEPTH || !lua_checkstack(L, 3))
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        lua_createtable(L, 0, (int)json_object_size(v));
        const char *key;
        json_t *item;
        /* The iterator API, not json_object_foreach: that macro's const cast
         * does not fit a const object. */
        for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
            key = json_object_iter_key(it);
            item = json_object_iter_value(it);
            lua_pushlstring(L, key, json_object_iter_key_len(it));
            if (push(L, item, depth + 1) != 0) {
                lua_pop(L, 2);
                return -1;
            }
            lua_rawset(L, -3);
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            if (push(L, json_array_get(v, i), depth + 1) != 0) {
                lua_pop(L, 1);
                return -1;
            }
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        return 0;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER:
        lua_pushnumber(L, (lua_Number)json_integer_value(v));
        return 0;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(v));
        return 0;
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return 0;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return 0;
    case JSON_NULL:
    default:
        lua_pushlightuserdata(L, NULL);
        return 0;
    }
}

int event_json_push_lua(lua_State *L, const json_t *v)
{
    return push(L, v, 0);
}
