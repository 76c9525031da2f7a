/* lua_http: the `http` global plugins use — http.request{...}, http.get,
 * http.post — which waits on the plugin host's waiting mechanism like
 * db:query, with the settings from config.lua's `http` section. Uses
 * lua_host, http_curl, lua-cjson. */
#ifndef DAZ_LUA_HTTP_H
#define DAZ_LUA_HTTP_H

#include <lua.h>
#include <uv.h>

#include "host/host.h"
#include "http/curl_loop.h"

/* Reads the `http` section of the config (registry ref cfg_ref), creates
 * the client (libcurl itself loads on the first request) and sets the
 * global `http` (and `daz.http`). Returns 0, or -1 after logging why. */
int lua_http_open(lua_State *L, struct host *h, uv_loop_t *loop, int cfg_ref);
/* The client, for metrics (NULL before lua_http_open). */
struct http_curl *lua_http_curl(void);
/* Cancels what is left, closes the loop handles, releases the refs. */
void lua_http_close(struct host *h);
/* After the loop has ended. */
void lua_http_free(void);

#endif
