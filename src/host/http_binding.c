/* lua_http: see http_binding.h.
 *
 *   local resp, err = http.request{ method = "GET", url = "https://...",
 *       headers = { accept = "text/html" }, body = "..." or {json},
 *       timeout_ms = 10000, max_bytes = 1048576, follow = true }
 *   resp.status, resp.headers (lower-case names), resp.body, resp.url,
 *   resp:json() -> value | nil, err
 *   http.get(url, opts), http.post(url, body, opts)
 *
 * Wrong types raise; network failures return nil and a short error. */
#include "host/http_binding.h"

#include <ctype.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/version.h"
#include "host/host_private.h"

#define MAX_RESOLVE 64

static struct http_curl *the_client;
static int encode_ref = LUA_NOREF, decode_ref = LUA_NOREF, resp_mt_ref = LUA_NOREF;

struct http_wait {
    struct host_wait *w;
    struct http_call *r;
};

struct http_curl *lua_http_curl(void)
{
    return the_client;
}

/* ------------------------------------------------------------ answers */

static int push_response(lua_State *co, void *arg)
{
    struct http_wait *hw = arg;
    const struct http_response *resp = http_call_response(hw->r);
    if (!lua_checkstack(co, 6))
        return 0;
    if (resp->error) {
        lua_pushnil(co);
        lua_pushstring(co, resp->error);
        return 2;
    }
    lua_createtable(co, 0, 4);
    lua_pushinteger(co, (lua_Integer)resp->status);
    lua_setfield(co, -2, "status");
    lua_pushlstring(co, resp->body, resp->body_len);
    lua_setfield(co, -2, "body");
    lua_pushstring(co, resp->url);
    lua_setfield(co, -2, "url");
    lua_createtable(co, 0, (int)resp->header_count);
    for (size_t i = 0; i < resp->header_count; i++) {
        const struct http_header *hd = &resp->headers[i];
        if (lua_getfield(co, -1, hd->name) == LUA_TSTRING) {
            /* Repeated headers are joined as HTTP allows. */
            lua_pushliteral(co, ", ");
            lua_pushstring(co, hd->value);
            lua_concat(co, 3);
        } else {
            lua_pop(co, 1);
            lua_pushstring(co, hd->value);
        }
        lua_setfield(co, -2, hd->name);
    }
    lua_setfield(co, -2, "headers");
    lua_rawgeti(co, LUA_REGISTRYINDEX, resp_mt_ref);
    lua_setmetatable(co, -2);
    return 1;
}

static void on_done(struct http_call *r, void *ctx)
{
    struct http_wait *hw = ctx;
    host_wait_complete(hw->w, push_response, hw);
    http_call_free(r);
    free(hw);
}

/* The plugin stopped (or reloaded) first: the request goes, nothing runs. */
static void on_cancel(void *ctx)
{
    struct http_wait *hw = ctx;
    http_call_cancel(hw->r);
    free(hw);
}

static int resp_json_l(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "body");
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pushnil(L);
        lua_pushliteral(L, "no body");
        return 2;
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lua_pushnil(L);
        lua_insert(L, -2);
        return 2;
    }
    return 1;
}

/* ------------------------------------------------------------ requests */

static int is_token(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return 0;
    return 1;
}

static int has_crlf(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

static lua_Integer opt_positive(lua_State *L, int t, const char *key, const char *what)
{
    int ty = lua_getfield(L, t, key);
    lua_Integer v = 0;
    if (ty != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || (v = lua_tointeger(L, -1)) <= 0)
            luaL_error(L, "%s: %s must be a positive integer", what, key);
    }
    lua_pop(L, 1);
    return v;
}

/* The request described by the table at t. Everything that can raise is
 * checked before anything is allocated. */
static int request_from(lua_State *L, int t, const char *what)
{
    t = lua_absindex(L, t);
    if (!the_client)
        return luaL_error(L, "%s: http is not available in this process", what);
    if (lua_getfield(L, t, "url") != LUA_TSTRING)
        return luaL_error(L, "%s: url must be a string", what);
    const char *url = lua_tostring(L, -1);
    int url_idx = lua_gettop(L);
    int ty = lua_getfield(L, t, "method");
    if (ty == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushliteral(L, "GET");
    } else if (ty != LUA_TSTRING || !is_token(lua_tostring(L, -1))) {
        return luaL_error(L, "%s: method must be a string such as \"GET\"", what);
    }
    int method_idx = lua_gettop(L);
    lua_Integer timeout_ms = opt_positive(L, t, "timeout_ms", what);
    lua_Integer max_bytes = opt_positive(L, t, "max_bytes", what);
    int follow = 1;
    ty = lua_getfield(L, t, "follow");
    if (ty != LUA_TNIL) {
        if (ty != LUA_TBOOLEAN)
            return luaL_error(L, "%s: follow must be a boolean", what);
        follow = lua_toboolean(L, -1);
    }
    lua_pop(L, 1);
    int has_content_type = 0;
    ty = lua_getfield(L, t, "headers");
    int headers_idx = lua_gettop(L);
    if (ty != LUA_TNIL) {
        if (ty != LUA_TTABLE)
            return luaL_error(L, "%s: headers must be a table of name = value", what);
        lua_pushnil(L);
        while (lua_next(L, headers_idx)) {
            if (lua_type(L, -2) != LUA_TSTRING || !is_token(lua_tostring(L, -2)))
                return luaL_error(L, "%s: header names must be strings (tokens)", what);
            if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER)
                return luaL_error(L, "%s: header %s must be a string", what, lua_tostring(L, -2));
            lua_pushvalue(L, -1);
            if (has_crlf(lua_tostring(L, -1)))
                return luaL_error(L, "%s: header %s contains a line break", what, lua_tostring(L, -3));
            lua_pop(L, 2);
            if (strcasecmp(lua_tostring(L, -1), "content-type") == 0)
                has_content_type = 1;
        }
    }
    ty = lua_getfield(L, t, "body");
    int json_body = 0;
    if (ty == LUA_TTABLE) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, encode_ref);
        lua_insert(L, -2);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            return luaL_error(L, "%s: cannot encode the body as JSON: %s", what, lua_tostring(L, -1));
        json_body = 1;
    } else if (ty != LUA_TNIL && ty != LUA_TSTRING) {
        return luaL_error(L, "%s: body must be a string or a table (sent as JSON)", what);
    }
    int body_idx = lua_gettop(L);

    char host[HTTP_GUARD_HOST_MAX];
    int port;
    if (http_url_host_port(url, host, sizeof host, &port) != 0 || has_crlf(url) || strpbrk(url, " \t")) {
        lua_pushnil(L);
        lua_pushliteral(L, "bad url: only http:// and https:// URLs with a host");
        return 2;
    }

    struct http_wait *hw = calloc(1, sizeof *hw);
    if (!hw)
        return luaL_error(L, "out of memory");
    struct host_wait *w = host_wait_begin(L, on_cancel, hw);
    if (!w) {
        free(hw);
        return luaL_error(L, "%s can only wait inside a handler or timer (not in init/start/stop)", what);
    }
    struct http_call *r = http_call_new(the_client, plugin_name(w->t->p), lua_tostring(L, method_idx),
                                              lua_tostring(L, url_idx));
    int oom = !r;
    if (r) {
        http_call_limits(r, (long)timeout_ms, (size_t)max_bytes, follow);
        if (lua_istable(L, headers_idx)) {
            lua_pushnil(L);
            while (!oom && lua_next(L, headers_idx)) {
                lua_pushvalue(L, -1);
                oom = http_call_header(r, lua_tostring(L, -3), lua_tostring(L, -1)) != 0;
                lua_pop(L, 2);
            }
            if (oom)
                lua_pop(L, 1);
        }
        if (!oom && json_body && !has_content_type)
            oom = http_call_header(r, "Content-Type", "application/json") != 0;
        if (!oom && lua_type(L, body_idx) == LUA_TSTRING) {
            size_t len;
            const char *b = lua_tolstring(L, body_idx, &len);
            oom = http_call_body(r, b, len) != 0;
        }
    }
    if (oom) {
        host_wait_abandon(w);
        http_call_free(r);
        free(hw);
        return luaL_error(L, "out of memory");
    }
    hw->w = w;
    hw->r = r;
    const char *err = NULL;
    if (http_call_submit(r, on_done, hw, &err) != 0) {
        host_wait_abandon(w);
        http_call_free(r);
        free(hw);
        lua_pushnil(L);
        lua_pushstring(L, err ? err : "http: failed");
        return 2;
    }
    return host_wait_yield(L);
}

/* http.request{...} or http:request{...} */
static int http_request_l(lua_State *L)
{
    int base = lua_istable(L, 1) && lua_istable(L, 2) ? 2 : 1;
    luaL_checktype(L, base, LUA_TTABLE);
    return request_from(L, base, "http.request");
}

/* A fresh options table: a shallow copy of opts (at idx, may be nil). */
static int copy_opts(lua_State *L, int idx, const char *what)
{
    if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx))
        return luaL_error(L, "%s: the options must be a table", what);
    lua_newtable(L);
    if (lua_istable(L, idx)) {
        lua_pushnil(L);
        while (lua_next(L, idx)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    return lua_gettop(L);
}

static int http_get_l(lua_State *L)
{
    int base = lua_istable(L, 1) ? 2 : 1;
    luaL_checktype(L, base, LUA_TSTRING);
    int t = copy_opts(L, base + 1, "http.get");
    lua_pushvalue(L, base);
    lua_setfield(L, t, "url");
    if (lua_getfield(L, t, "method") == LUA_TNIL) {
        lua_pushliteral(L, "GET");
        lua_setfield(L, t, "method");
    }
    lua_pop(L, 1);
    return request_from(L, t, "http.get");
}

static int http_post_l(lua_State *L)
{
    int base = lua_istable(L, 1) && lua_type(L, 2) == LUA_TSTRING ? 2 : 1;
    luaL_checktype(L, base, LUA_TSTRING);
    int bt = lua_type(L, base + 1);
    if (bt != LUA_TSTRING && bt != LUA_TTABLE && bt != LUA_TNIL && bt != LUA_TNONE)
        return luaL_error(L, "http.post: body must be a string or a table (sent as JSON)");
    int t = copy_opts(L, base + 2, "http.post");
    lua_pushvalue(L, base);
    lua_setfield(L, t, "url");
    lua_pushvalue(L, base + 1);
    lua_setfield(L, t, "body");
    if (lua_getfield(L, t, "method") == LUA_TNIL) {
        lua_pushliteral(L, "POST");
        lua_setfield(L, t, "method");
    }
    lua_pop(L, 1);
    return request_from(L, t, "http.post");
}

/* ------------------------------------------------------------ module */

static long field_int(lua_State *L, int t, const char *key, long dflt)
{
    lua_getfield(L, t, key);
    long v = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1) : dflt;
    lua_pop(L, 1);
    return v;
}

/* The `http` config section into settings; strings stay on the stack. */
static int read_settings(lua_State *L, int cfg_ref, struct http_settings *s, const char **resolve)
{
    memset(s, 0, sizeof *s);
    lua_rawgeti(L, LUA_REGISTRYINDEX, cfg_ref);
    lua_getfield(L, -1, "http");
    lua_remove(L, -2);
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int t = lua_gettop(L);
    s->timeout_ms = field_int(L, t, "timeout_ms", 10000);
    s->max_bytes = (size_t)field_int(L, t, "max_bytes", 1 << 20);
    s->max_redirects = field_int(L, t, "max_redirects", 5);
    s->max_in_flight = (int)field_int(L, t, "max_in_flight", 64);
    s->max_in_flight_per_owner = (int)field_int(L, t, "max_in_flight_per_plugin", 16);
    s->max_queued = (int)field_int(L, t, "max_queued", 1000);
    if (lua_getfield(L, t, "user_agent") == LUA_TSTRING) {
        s->user_agent = lua_tostring(L, -1);
    } else {
        lua_pop(L, 1);
        lua_pushliteral(L, "daz/" DAZ_VERSION);
        s->user_agent = lua_tostring(L, -1);
    }
    if (lua_getfield(L, t, "allow_private") == LUA_TTABLE) {
        lua_Integer n = luaL_len(L, -1);
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, -1, i);
            char err[300];
            const char *entry = lua_tostring(L, -1);
            if (!entry || http_guard_add(&s->guard, entry, err, sizeof err) != 0) {
                log_error("http", "http.allow_private[%d]: %s", (int)i, entry ? err : "must be a string");
                http_guard_free(&s->guard);
                lua_settop(L, t - 1);
                return -1;
            }
            lua_pop(L, 1);
        }
    }
    if (lua_getfield(L, t, "resolve") == LUA_TTABLE) {
        int list = lua_gettop(L);
        lua_Integer n = luaL_len(L, list);
        for (lua_Integer i = 1; i <= n && s->resolve_count < MAX_RESOLVE; i++) {
            lua_rawgeti(L, list, i);
            if (lua_type(L, -1) == LUA_TSTRING)
                resolve[s->resolve_count++] = lua_tostring(L, -1);
            /* left on the stack: the strings must live until the copy */
        }
    }
    s->resolve = resolve;
    return t;
}

int lua_http_open(lua_State *L, struct host *h, uv_loop_t *loop, int cfg_ref)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_error("http", "lua-cjson is required: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "encode");
    encode_ref = host_ref(h, L);
    lua_getfield(L, -1, "decode");
    decode_ref = host_ref(h, L);
    lua_pop(L, 1);

    int top = lua_gettop(L);
    struct http_settings s;
    const char *resolve[MAX_RESOLVE];
    if (read_settings(L, cfg_ref, &s, resolve) < 0)
        return -1;
    the_client = http_curl_new(loop, &s);
    lua_settop(L, top);
    if (!the_client) {
        log_error("http", "cannot create the HTTP client (out of memory)");
        return -1;
    }

    lua_createtable(L, 0, 2);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, resp_json_l);
    lua_setfield(L, -2, "json");
    lua_setfield(L, -2, "__index");
    lua_pushliteral(L, "http.response");
    lua_setfield(L, -2, "__name");
    resp_mt_ref = host_ref(h, L);

    static const luaL_Reg fns[] = {
        {"request", http_request_l}, {"get", http_get_l}, {"post", http_post_l}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "http");
    lua_getglobal(L, "daz");
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "http");
    }
    lua_pop(L, 2);
    return 0;
}

void lua_http_close(struct host *h)
{
    http_curl_close(the_client);
    host_unref(h, encode_ref);
    host_unref(h, decode_ref);
    host_unref(h, resp_mt_ref);
    encode_ref = decode_ref = resp_mt_ref = LUA_NOREF;
}

void lua_http_free(void)
{
    http_curl_free(the_client);
    the_client = NULL;
}
