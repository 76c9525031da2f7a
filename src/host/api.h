/* lua_api: the Lua surface of Daz — the `daz` module, plugin bus handles,
 * event objects, timers and sleep — and the private `core` table the plugin
 * manager (lua/core/plugins.lua) uses. Uses lua_host, bus, event, lua-cjson. */
#ifndef DAZ_LUA_API_H
#define DAZ_LUA_API_H

#include <lua.h>

#include "host/host.h"

/* Registers metatables, loads lua-cjson, installs the event hooks and sets
 * the global `daz`. Returns 0, or -1 after logging why. */
int lua_api_open(lua_State *L, struct host *h);
/* Pushes the private `core` function table. */
void lua_api_push_core(lua_State *L);
/* Releases the refs lua_api_open took and removes the event hooks. */
void lua_api_close(struct host *h);

#endif
